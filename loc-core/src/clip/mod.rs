//! CLIP (transformers layout): the text encoder Stable Diffusion conditions on, the BPE
//! tokenizer that feeds it, and the vision tower (the hypernetwork's image encoder, CLIP-I).

mod encoder;
mod text;
mod tokenizer;
mod vision;

pub use encoder::{ClipEncoder, EncoderShape};
pub use text::{ClipTextConfig, ClipTextModel, ClipTextOutput};
pub use tokenizer::ClipTokenizer;
pub use vision::{ClipVisionConfig, ClipVisionModelWithProjection, ClipVisionOutput};
