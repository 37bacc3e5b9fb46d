//! The pre-norm transformer both CLIP towers share (transformers `CLIPEncoder`).
//!
//! Follows transformers `src/transformers/models/clip/modeling_clip.py`: `CLIPEncoder`,
//! `CLIPEncoderLayer`, `CLIPAttention`, `CLIPMLP`.

use std::path::Path;

use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use crate::error::ModelError;
use crate::nn::attention::multi_head_attention;
use crate::nn::gelu;
use crate::weights::read_config;

/// The sizes of a CLIP encoder.
#[derive(Clone, Copy, Debug)]
pub struct EncoderShape {
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub quick_gelu: bool,
    pub eps: f64,
}

/// One tower's configuration from its own `config.json`, or from a full CLIP `config.json`
/// (`tower` = `text_config` / `vision_config`, with the top-level `projection_dim`).
pub fn read_tower_config<T: serde::de::DeserializeOwned>(path: &Path, tower: &str) -> Result<T, ModelError> {
    let mut value: serde_json::Value = read_config(path)?;
    if let Some(own) = value.get(tower).cloned() {
        let projection = value.get("projection_dim").cloned();
        value = own;
        if let Some(p) = projection {
            value["projection_dim"] = p;
        }
    }
    serde_json::from_value(value).map_err(|source| ModelError::Json { path: path.to_path_buf(), source })
}

/// `Err((field, problem))` for an activation or head count this port cannot build.
pub fn check_encoder(act: &str, hidden: usize, heads: usize) -> Result<(), (&'static str, String)> {
    if !["quick_gelu", "gelu"].contains(&act) {
        return Err(("hidden_act", format!("`{act}` is not supported (quick_gelu, gelu)")));
    }
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(("num_attention_heads", format!("does not divide hidden_size {hidden}")));
    }
    Ok(())
}

/// CLIP's quick GELU `x * sigmoid(1.702 x)`, or the exact GELU.
pub fn activation<const D: usize>(h: Tensor<D>, quick_gelu: bool) -> Tensor<D> {
    if quick_gelu { h.clone() * sigmoid(h.mul_scalar(1.702)) } else { gelu(h) }
}

/// `Err((field, problem))` unless `patch_size` tiles `image_size`.
pub fn check_patches(image_size: usize, patch_size: usize) -> Result<(), (&'static str, String)> {
    if patch_size == 0 || !image_size.is_multiple_of(patch_size) {
        return Err(("patch_size", format!("does not divide image_size {image_size}")));
    }
    Ok(())
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
        let (q, k, v) = (self.q_proj.forward(x.clone()), self.k_proj.forward(x.clone()), self.v_proj.forward(x));
        self.out_proj.forward(multi_head_attention(q, k, v, self.heads, causal))
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
        self.fc2.forward(activation(self.fc1.forward(x), self.quick_gelu))
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

impl ClipEncoder {
    pub fn new(shape: &EncoderShape, device: &Device) -> Self {
        let d = shape.hidden;
        let norm = || LayerNormConfig::new(d).with_epsilon(shape.eps).init(device);
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let layers = (0..shape.layers)
            .map(|_| ClipEncoderLayer {
                self_attn: ClipAttention {
                    q_proj: linear(d, d),
                    k_proj: linear(d, d),
                    v_proj: linear(d, d),
                    out_proj: linear(d, d),
                    heads: shape.heads,
                },
                layer_norm1: norm(),
                mlp: ClipMlp {
                    fc1: linear(d, shape.intermediate),
                    fc2: linear(shape.intermediate, d),
                    quick_gelu: shape.quick_gelu,
                },
                layer_norm2: norm(),
            })
            .collect();
        Self { layers }
    }

    /// `x: [N, L, D]`; `causal` for the text tower.
    pub fn forward(&self, mut x: Tensor<3>, causal: bool) -> Tensor<3> {
        for layer in &self.layers {
            x = x.clone() + layer.self_attn.forward(layer.layer_norm1.forward(x), causal);
            x = x.clone() + layer.mlp.forward(layer.layer_norm2.forward(x));
        }
        x
    }
}
