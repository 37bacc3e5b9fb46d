//! transformers `CLIPTextModel`: token + position embeddings, a causal pre-norm transformer,
//! a final LayerNorm; the pooled output is the state at the end-of-text token.
//! `CLIPTextModelWithProjection` adds the projection into the joint image-text space (CLIP-T).
//!
//! Follows transformers `src/transformers/models/clip/modeling_clip.py`: `CLIPTextEmbeddings`,
//! `CLIPTextTransformer`, `CLIPTextModel`, `CLIPTextModelWithProjection`.

use std::path::Path;

use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::encoder::{ClipEncoder, EncoderShape, check_encoder, read_tower_config};

use crate::device::to_f32;
use crate::error::ModelError;
use crate::weights::{Weights, load_safetensors_part, weights_file};

/// `text_encoder/config.json`, or the `text_config` of a full CLIP config (unknown keys ignored).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "quick_gelu")]
    pub hidden_act: String,
    #[serde(default = "layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// 2 in old configs, where the pooled position is the largest token id (the EOT token).
    #[serde(default = "eos")]
    pub eos_token_id: u32,
    /// Used by [`ClipTextModelWithProjection`] only.
    #[serde(default = "projection_dim")]
    pub projection_dim: usize,
}

fn projection_dim() -> usize {
    512
}

fn quick_gelu() -> String {
    "quick_gelu".into()
}
fn layer_norm_eps() -> f64 {
    1e-5
}
fn eos() -> u32 {
    2
}

impl ClipTextConfig {
    fn encoder(&self) -> EncoderShape {
        EncoderShape {
            hidden: self.hidden_size,
            intermediate: self.intermediate_size,
            layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            quick_gelu: self.hidden_act == "quick_gelu",
            eps: self.layer_norm_eps,
        }
    }

    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let config: Self = read_tower_config(path, "text_config")?;
        let err = |field: &str, problem: String| ModelError::Config {
            path: path.to_path_buf(),
            field: field.into(),
            problem,
        };
        check_encoder(&config.hidden_act, config.hidden_size, config.num_attention_heads)
            .map_err(|(f, p)| err(f, p))?;
        Ok(config)
    }
}

#[derive(Module, Debug)]
pub struct ClipTextEmbeddings {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
}

#[derive(Module, Debug)]
pub struct ClipTextTransformer {
    pub embeddings: ClipTextEmbeddings,
    pub encoder: ClipEncoder,
    pub final_layer_norm: LayerNorm,
}

/// `text_model.*` keys, as transformers saves `CLIPTextModel`.
#[derive(Module, Debug)]
pub struct ClipTextModel {
    pub text_model: ClipTextTransformer,
    #[module(skip)]
    pub config: ClipTextConfig,
}

/// What the text encoder returns.
#[derive(Clone, Debug)]
pub struct ClipTextOutput {
    /// `[N, L, D]`: what Stable Diffusion's cross-attention reads.
    pub last_hidden_state: Tensor<3>,
    /// `[N, D]`: the state at the end-of-text token.
    pub pooler_output: Tensor<2>,
}

/// Older transformers checkpoints prefix every key with `text_model.`; transformers 5 saves
/// `CLIPTextModel` without it.
const UNPREFIXED: [(&str, &str); 1] = [(r"^(embeddings|encoder|final_layer_norm)\.", "text_model.$1.")];

/// The vision half of a full CLIP file, left alone when only the text tower loads.
const VISION_KEYS: [&str; 3] = ["vision_model.", "visual_projection.", "logit_scale"];

impl ClipTextTransformer {
    fn new(config: &ClipTextConfig, device: &Device) -> Self {
        let d = config.hidden_size;
        Self {
            embeddings: ClipTextEmbeddings {
                token_embedding: EmbeddingConfig::new(config.vocab_size, d).init(device),
                position_embedding: EmbeddingConfig::new(config.max_position_embeddings, d).init(device),
            },
            encoder: ClipEncoder::new(&config.encoder(), device),
            final_layer_norm: LayerNormConfig::new(d).with_epsilon(config.layer_norm_eps).init(device),
        }
    }

    /// `input_ids: [N, L]` (L at most `max_position_embeddings`).
    fn forward(&self, input_ids: Tensor<2, Int>, config: &ClipTextConfig) -> ClipTextOutput {
        let [n, l] = input_ids.dims();
        let device = input_ids.device();
        let ids: Vec<i64> = input_ids.to_data().convert::<i64>().try_into_vec::<i64>().expect("token ids");
        let positions = Tensor::<1, Int>::arange(0..l as i64, &device).reshape([1, l]);
        let x =
            self.embeddings.token_embedding.forward(input_ids) + self.embeddings.position_embedding.forward(positions);
        let x = self.final_layer_norm.forward(self.encoder.forward(x, true));
        let eos = config.eos_token_id as i64;
        let pooled = (0..n)
            .map(|row| {
                let row_ids = &ids[row * l..(row + 1) * l];
                // Old configs (eos 2): the largest id is the EOT token; else its first occurrence.
                let at = if eos == 2 {
                    row_ids.iter().enumerate().max_by_key(|(i, v)| (**v, std::cmp::Reverse(*i))).map_or(0, |(i, _)| i)
                } else {
                    row_ids.iter().position(|&v| v == eos).unwrap_or(l - 1)
                };
                x.clone().narrow(0, row, 1).narrow(1, at, 1).reshape([1, config.hidden_size])
            })
            .collect();
        ClipTextOutput { pooler_output: Tensor::cat(pooled, 0), last_hidden_state: x }
    }
}

impl ClipTextModel {
    pub fn new(config: &ClipTextConfig, device: &Device) -> Self {
        Self { text_model: ClipTextTransformer::new(config, device), config: config.clone() }
    }

    /// A transformers folder (`config.json`, `model.safetensors`), frozen; a full CLIP
    /// folder gives its text tower.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let config = ClipTextConfig::load(&dir.join("config.json"))?;
        Self::load_weights(&config, &weights_file(dir, "model"), device)
    }

    /// The model of `config` with transformers-named `weights` (with or without the
    /// `text_model.` prefix), frozen.
    pub fn load_weights(
        config: &ClipTextConfig,
        weights: impl Into<Weights>,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let others = [VISION_KEYS.as_slice(), &["text_projection."]].concat();
        load_safetensors_part(Self::new(config, device), weights, &UNPREFIXED, &others).map(Module::no_grad)
    }

    /// `input_ids: [N, L]` (L at most `max_position_embeddings`).
    pub fn forward(&self, input_ids: Tensor<2, Int>) -> ClipTextOutput {
        let out = self.text_model.forward(input_ids, &self.config);
        ClipTextOutput { last_hidden_state: to_f32(out.last_hidden_state), pooler_output: to_f32(out.pooler_output) }
    }
}

/// transformers `CLIPTextModelWithProjection` (or the text half of a full `CLIPModel`): the
/// pooled state projected into the space CLIP image embeddings live in.
#[derive(Module, Debug)]
pub struct ClipTextModelWithProjection {
    pub text_model: ClipTextTransformer,
    pub text_projection: Linear,
    #[module(skip)]
    pub config: ClipTextConfig,
}

impl ClipTextModelWithProjection {
    pub fn new(config: &ClipTextConfig, device: &Device) -> Self {
        Self {
            text_model: ClipTextTransformer::new(config, device),
            text_projection: LinearConfig::new(config.hidden_size, config.projection_dim).with_bias(false).init(device),
            config: config.clone(),
        }
    }

    /// A transformers folder of this model or of a full CLIP model, frozen.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let config = ClipTextConfig::load(&dir.join("config.json"))?;
        load_safetensors_part(Self::new(&config, device), &weights_file(dir, "model"), &UNPREFIXED, &VISION_KEYS)
            .map(Module::no_grad)
    }

    /// `input_ids: [N, L]` to `text_embeds: [N, projection_dim]`.
    pub fn forward(&self, input_ids: Tensor<2, Int>) -> Tensor<2> {
        to_f32(self.text_projection.forward(self.text_model.forward(input_ids, &self.config).pooler_output))
    }
}
