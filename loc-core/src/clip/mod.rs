//! CLIP (transformers layout): the text encoder Stable Diffusion conditions on, and the BPE
//! tokenizer that feeds it.

mod text;
mod tokenizer;

pub use text::{ClipTextConfig, ClipTextModel, ClipTextOutput};
pub use tokenizer::ClipTokenizer;
