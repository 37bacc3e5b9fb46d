//! transformers `ViTModel` (the layout DINO's `facebook/dino-vits16` ships in): patch
//! embedding with a class token and learned positions, pre-norm transformer layers, a final
//! LayerNorm. The DINO metric reads the class token of `last_hidden_state`; the pooler
//! (dense + tanh) is not used and its weights are left in the file.
//!
//! Follows transformers `src/transformers/models/vit/modeling_vit.py`: `ViTEmbeddings`,
//! `ViTSelfAttention`, `ViTLayer`, `ViTModel`.

use std::path::Path;

use burn::module::{Param, ParamId};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::clip::{activation, check_encoder, check_patches};
use crate::device::{to_dtype, to_f32};
use crate::error::ModelError;
use crate::nn::attention::multi_head_attention;
use crate::weights::{load_safetensors_part, read_config, weights_file};

/// `config.json` of a `ViTModel` (unknown keys ignored).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ViTConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "gelu_name")]
    pub hidden_act: String,
    #[serde(default = "layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "image_size")]
    pub image_size: usize,
    #[serde(default = "patch_size")]
    pub patch_size: usize,
    #[serde(default = "three")]
    pub num_channels: usize,
    #[serde(default = "yes")]
    pub qkv_bias: bool,
}

fn gelu_name() -> String {
    "gelu".into()
}
fn layer_norm_eps() -> f64 {
    1e-12
}
fn image_size() -> usize {
    224
}
fn patch_size() -> usize {
    16
}
fn three() -> usize {
    3
}
fn yes() -> bool {
    true
}

impl ViTConfig {
    /// DINO ViT-S/16 (`facebook/dino-vits16`): what the MagicBrush DINO metric uses.
    pub fn dino_vits16() -> Self {
        Self {
            hidden_size: 384,
            num_hidden_layers: 12,
            num_attention_heads: 6,
            intermediate_size: 1536,
            hidden_act: gelu_name(),
            layer_norm_eps: 1e-6,
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            qkv_bias: true,
        }
    }

    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let config: Self = read_config(path)?;
        check_encoder(&config.hidden_act, config.hidden_size, config.num_attention_heads)
            .and_then(|()| check_patches(config.image_size, config.patch_size))
            .map_err(|(field, problem)| ModelError::Config {
                path: path.to_path_buf(),
                field: field.into(),
                problem,
            })?;
        Ok(config)
    }

    fn patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }
}

#[derive(Module, Debug)]
pub struct ViTPatchEmbeddings {
    pub projection: Conv2d,
}

#[derive(Module, Debug)]
pub struct ViTEmbeddings {
    pub cls_token: Param<Tensor<3>>,
    pub position_embeddings: Param<Tensor<3>>,
    pub patch_embeddings: ViTPatchEmbeddings,
}

#[derive(Module, Debug)]
pub struct ViTSelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    #[module(skip)]
    pub heads: usize,
}

#[derive(Module, Debug)]
pub struct ViTDense {
    pub dense: Linear,
}

#[derive(Module, Debug)]
pub struct ViTAttention {
    pub attention: ViTSelfAttention,
    pub output: ViTDense,
}

#[derive(Module, Debug)]
pub struct ViTLayer {
    pub attention: ViTAttention,
    pub intermediate: ViTDense,
    pub output: ViTDense,
    pub layernorm_before: LayerNorm,
    pub layernorm_after: LayerNorm,
    #[module(skip)]
    pub quick_gelu: bool,
}

#[derive(Module, Debug)]
pub struct ViTEncoder {
    pub layer: Vec<ViTLayer>,
}

#[derive(Module, Debug)]
pub struct ViTModel {
    pub embeddings: ViTEmbeddings,
    pub encoder: ViTEncoder,
    pub layernorm: LayerNorm,
    #[module(skip)]
    pub config: ViTConfig,
}

impl ViTSelfAttention {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let (q, k, v) = (self.query.forward(x.clone()), self.key.forward(x.clone()), self.value.forward(x));
        multi_head_attention(q, k, v, self.heads, false)
    }
}

impl ViTLayer {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let attended = self.attention.attention.forward(self.layernorm_before.forward(x.clone()));
        let x = x + self.attention.output.dense.forward(attended);
        let hidden = self.intermediate.dense.forward(self.layernorm_after.forward(x.clone()));
        let hidden = activation(hidden, self.quick_gelu);
        x + self.output.dense.forward(hidden)
    }
}

impl ViTModel {
    pub fn new(config: &ViTConfig, device: &Device) -> Self {
        let d = config.hidden_size;
        let norm = || LayerNormConfig::new(d).with_epsilon(config.layer_norm_eps).init(device);
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let p = config.patch_size;
        let layer = (0..config.num_hidden_layers)
            .map(|_| ViTLayer {
                attention: ViTAttention {
                    attention: ViTSelfAttention {
                        query: LinearConfig::new(d, d).with_bias(config.qkv_bias).init(device),
                        key: LinearConfig::new(d, d).with_bias(config.qkv_bias).init(device),
                        value: LinearConfig::new(d, d).with_bias(config.qkv_bias).init(device),
                        heads: config.num_attention_heads,
                    },
                    output: ViTDense { dense: linear(d, d) },
                },
                intermediate: ViTDense { dense: linear(d, config.intermediate_size) },
                output: ViTDense { dense: linear(config.intermediate_size, d) },
                layernorm_before: norm(),
                layernorm_after: norm(),
                quick_gelu: config.hidden_act == "quick_gelu",
            })
            .collect();
        let param = |shape: [usize; 3]| Param::initialized(ParamId::new(), Tensor::zeros(shape, device));
        Self {
            embeddings: ViTEmbeddings {
                cls_token: param([1, 1, d]),
                position_embeddings: param([1, config.patches() + 1, d]),
                patch_embeddings: ViTPatchEmbeddings {
                    projection: Conv2dConfig::new([config.num_channels, d], [p, p]).with_stride([p, p]).init(device),
                },
            },
            encoder: ViTEncoder { layer },
            layernorm: norm(),
            config: config.clone(),
        }
    }

    /// A transformers folder (`config.json`, `model.safetensors`), frozen. The pooler and a
    /// masked-modelling token, when the file has them, are not part of this model.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let config = ViTConfig::load(&dir.join("config.json"))?;
        let unused = ["pooler.", "embeddings.mask_token"];
        load_safetensors_part(Self::new(&config, device), &weights_file(dir, "model"), &[], &unused)
            .map(Module::no_grad)
    }

    /// `pixel_values: [N, C, S, S]` (`S = image_size`) to `last_hidden_state: [N, 1 + patches, D]`
    /// after the final LayerNorm.
    pub fn forward(&self, pixel_values: Tensor<4>) -> Tensor<3> {
        let e = &self.embeddings;
        let [n, _, h, w] = pixel_values.dims();
        let size = self.config.image_size;
        assert!(h == size && w == size, "ViTModel: {h}x{w} pixel_values for a {size}x{size} model");
        let d = self.config.hidden_size;
        let dtype = e.patch_embeddings.projection.weight.val().dtype();
        let patches = e.patch_embeddings.projection.forward(to_dtype(pixel_values, dtype));
        let count = self.config.patches();
        let patches = patches.reshape([n, d, count]).swap_dims(1, 2);
        let class = e.cls_token.val().repeat_dim(0, n);
        let mut x = Tensor::cat(vec![class, patches], 1) + e.position_embeddings.val();
        for layer in &self.encoder.layer {
            x = layer.forward(x);
        }
        to_f32(self.layernorm.forward(x))
    }

    /// The class token after the final LayerNorm, `[N, D]`: DINO's image embedding.
    pub fn cls(&self, pixel_values: Tensor<4>) -> Tensor<2> {
        let n = pixel_values.dims()[0];
        self.forward(pixel_values).narrow(1, 0, 1).reshape([n, self.config.hidden_size])
    }
}
