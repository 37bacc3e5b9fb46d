//! transformers `CLIPTextModel`: token + position embeddings, a causal pre-norm transformer,
//! a final LayerNorm; the pooled output is the state at the end-of-text token.

use std::path::Path;

use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use serde::Deserialize;

use crate::error::ModelError;
use crate::weights::{load_safetensors_remapped, read_config};

/// `text_encoder/config.json` (unknown keys ignored).
#[derive(Clone, Debug, Deserialize)]
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
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let config: Self = read_config(path)?;
        let err = |field: &str, problem: String| ModelError::Config {
            path: path.to_path_buf(),
            field: field.into(),
            problem,
        };
        if !["quick_gelu", "gelu"].contains(&config.hidden_act.as_str()) {
            return Err(err("hidden_act", format!("`{}` is not supported (quick_gelu, gelu)", config.hidden_act)));
        }
        if config.num_attention_heads == 0 || !config.hidden_size.is_multiple_of(config.num_attention_heads) {
            return Err(err("num_attention_heads", format!("does not divide hidden_size {}", config.hidden_size)));
        }
        Ok(config)
    }
}

#[derive(Module, Debug)]
pub struct ClipAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    #[module(skip)]
    pub heads: usize,
}

impl ClipAttention {
    fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let [n, l, d] = x.dims();
        let split = |t: Tensor<3>| t.reshape([n, l, self.heads, d / self.heads]).swap_dims(1, 2);
        let (q, k, v) = (self.q_proj.forward(x.clone()), self.k_proj.forward(x.clone()), self.v_proj.forward(x));
        let options = AttentionModuleOptions { is_causal: causal, ..Default::default() };
        let out = attention(split(q), split(k), split(v), None, None, options);
        self.out_proj.forward(out.swap_dims(1, 2).reshape([n, l, d]))
    }
}

#[derive(Module, Debug)]
pub struct ClipMlp {
    pub fc1: Linear,
    pub fc2: Linear,
    #[module(skip)]
    pub quick_gelu: bool,
}

impl ClipMlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.fc1.forward(x);
        let h = if self.quick_gelu { h.clone() * sigmoid(h.mul_scalar(1.702)) } else { gelu(h) };
        self.fc2.forward(h)
    }
}

/// One pre-norm transformer layer (shared with the vision tower's layout).
#[derive(Module, Debug)]
pub struct ClipEncoderLayer {
    pub self_attn: ClipAttention,
    pub layer_norm1: LayerNorm,
    pub mlp: ClipMlp,
    pub layer_norm2: LayerNorm,
}

#[derive(Module, Debug)]
pub struct ClipEncoder {
    pub layers: Vec<ClipEncoderLayer>,
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

impl ClipTextModel {
    pub fn new(config: &ClipTextConfig, device: &Device) -> Self {
        let d = config.hidden_size;
        let norm = || LayerNormConfig::new(d).with_epsilon(config.layer_norm_eps).init(device);
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let layers = (0..config.num_hidden_layers)
            .map(|_| ClipEncoderLayer {
                self_attn: ClipAttention {
                    q_proj: linear(d, d),
                    k_proj: linear(d, d),
                    v_proj: linear(d, d),
                    out_proj: linear(d, d),
                    heads: config.num_attention_heads,
                },
                layer_norm1: norm(),
                mlp: ClipMlp {
                    fc1: linear(d, config.intermediate_size),
                    fc2: linear(config.intermediate_size, d),
                    quick_gelu: config.hidden_act == "quick_gelu",
                },
                layer_norm2: norm(),
            })
            .collect();
        Self {
            text_model: ClipTextTransformer {
                embeddings: ClipTextEmbeddings {
                    token_embedding: EmbeddingConfig::new(config.vocab_size, d).init(device),
                    position_embedding: EmbeddingConfig::new(config.max_position_embeddings, d).init(device),
                },
                encoder: ClipEncoder { layers },
                final_layer_norm: norm(),
            },
            config: config.clone(),
        }
    }

    /// A transformers folder (`config.json`, `model.safetensors`), frozen. Keys with the
    /// `text_model.` prefix (transformers 4, Stable Diffusion checkpoints) and without it
    /// (transformers 5) both load.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let config = ClipTextConfig::load(&dir.join("config.json"))?;
        let unprefixed = [(r"^(embeddings|encoder|final_layer_norm)\.", "text_model.$1.")];
        load_safetensors_remapped(Self::new(&config, device), &dir.join("model.safetensors"), &unprefixed)
            .map(Module::no_grad)
    }

    /// `input_ids: [N, L]` (L at most `max_position_embeddings`).
    pub fn forward(&self, input_ids: Tensor<2, Int>) -> ClipTextOutput {
        let [n, l] = input_ids.dims();
        let device = input_ids.device();
        let ids: Vec<i64> = input_ids.to_data().convert::<i64>().try_into_vec::<i64>().expect("token ids");
        let t = &self.text_model;
        let positions = Tensor::<1, Int>::arange(0..l as i64, &device).reshape([1, l]);
        let mut x =
            t.embeddings.token_embedding.forward(input_ids) + t.embeddings.position_embedding.forward(positions);
        for layer in &t.encoder.layers {
            x = x.clone() + layer.self_attn.forward(layer.layer_norm1.forward(x), true);
            x = x.clone() + layer.mlp.forward(layer.layer_norm2.forward(x));
        }
        let x = t.final_layer_norm.forward(x);
        let eos = self.config.eos_token_id as i64;
        let pooled = (0..n)
            .map(|row| {
                let row_ids = &ids[row * l..(row + 1) * l];
                // Old configs (eos 2): the largest id is the EOT token; else its first occurrence.
                let at = if eos == 2 {
                    row_ids.iter().enumerate().max_by_key(|(i, v)| (**v, std::cmp::Reverse(*i))).map_or(0, |(i, _)| i)
                } else {
                    row_ids.iter().position(|&v| v == eos).unwrap_or(l - 1)
                };
                x.clone().narrow(0, row, 1).narrow(1, at, 1).reshape([1, self.config.hidden_size])
            })
            .collect();
        ClipTextOutput { pooler_output: Tensor::cat(pooled, 0), last_hidden_state: x }
    }
}
