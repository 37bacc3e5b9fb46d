//! CLIP (transformers layout): the text encoder Stable Diffusion conditions on, the BPE
//! tokenizer that feeds it, the vision tower (the hypernetwork's image encoder, CLIP-I), and
//! both towers with their projections from a full CLIP folder (CLIP-I, CLIP-T).

mod encoder;
mod text;
mod tokenizer;
mod vision;

pub use encoder::{ClipEncoder, EncoderShape, activation, check_encoder, check_patches};
pub use text::{ClipTextConfig, ClipTextModel, ClipTextModelWithProjection, ClipTextOutput};
pub use tokenizer::ClipTokenizer;
pub use vision::{CLIP_MEAN, CLIP_STD, ClipVisionConfig, ClipVisionModelWithProjection, ClipVisionOutput, clip_pixels};
