//! transformers `CLIPVisionModelWithProjection`: patch embedding, class token, position
//! embedding, `pre_layrnorm`, encoder, `post_layernorm` on the class token, projection.
//!
//! Follows transformers `src/transformers/models/clip/modeling_clip.py`: `CLIPVisionEmbeddings`,
//! `CLIPVisionTransformer`, `CLIPVisionModelWithProjection`.

use std::path::Path;

use burn::module::{Param, ParamId};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::encoder::{ClipEncoder, EncoderShape, check_encoder, check_patches, read_tower_config};
use crate::device::{to_dtype, to_f32};
use crate::error::ModelError;
use crate::weights::{load_safetensors_part, weights_file};

/// The vision tower's `config.json` (or the `vision_config` of a full CLIP config).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ClipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    #[serde(default = "three")]
    pub num_channels: usize,
    #[serde(default = "projection_dim")]
    pub projection_dim: usize,
    #[serde(default = "quick_gelu")]
    pub hidden_act: String,
    #[serde(default = "layer_norm_eps")]
    pub layer_norm_eps: f64,
}

fn three() -> usize {
    3
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

impl ClipVisionConfig {
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let config: Self = read_tower_config(path, "vision_config")?;
        let err = |field: &str, problem: String| ModelError::Config {
            path: path.to_path_buf(),
            field: field.into(),
            problem,
        };
        check_encoder(&config.hidden_act, config.hidden_size, config.num_attention_heads)
            .and_then(|()| check_patches(config.image_size, config.patch_size))
            .map_err(|(f, p)| err(f, p))?;
        Ok(config)
    }

    fn patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }
}

#[derive(Module, Debug)]
pub struct ClipVisionEmbeddings {
    pub class_embedding: Param<Tensor<1>>,
    pub patch_embedding: Conv2d,
    pub position_embedding: Embedding,
}

#[derive(Module, Debug)]
pub struct ClipVisionTransformer {
    pub embeddings: ClipVisionEmbeddings,
    pub pre_layrnorm: LayerNorm,
    pub encoder: ClipEncoder,
    pub post_layernorm: LayerNorm,
}

#[derive(Module, Debug)]
pub struct ClipVisionModelWithProjection {
    pub vision_model: ClipVisionTransformer,
    pub visual_projection: Linear,
    #[module(skip)]
    pub config: ClipVisionConfig,
}

/// What the vision tower returns.
#[derive(Clone, Debug)]
pub struct ClipVisionOutput {
    /// `[N, 1 + patches, D]`: class token then patch tokens.
    pub last_hidden_state: Tensor<3>,
    /// `[N, D]`: the class token after `post_layernorm`.
    pub pooler_output: Tensor<2>,
    /// `[N, projection_dim]`.
    pub image_embeds: Tensor<2>,
}

impl ClipVisionModelWithProjection {
    pub fn new(config: &ClipVisionConfig, device: &Device) -> Self {
        let d = config.hidden_size;
        let norm = || LayerNormConfig::new(d).with_epsilon(config.layer_norm_eps).init(device);
        let shape = EncoderShape {
            hidden: d,
            intermediate: config.intermediate_size,
            layers: config.num_hidden_layers,
            heads: config.num_attention_heads,
            quick_gelu: config.hidden_act == "quick_gelu",
            eps: config.layer_norm_eps,
        };
        let p = config.patch_size;
        Self {
            vision_model: ClipVisionTransformer {
                embeddings: ClipVisionEmbeddings {
                    class_embedding: Param::initialized(ParamId::new(), Tensor::zeros([d], device)),
                    patch_embedding: Conv2dConfig::new([config.num_channels, d], [p, p])
                        .with_stride([p, p])
                        .with_bias(false)
                        .init(device),
                    position_embedding: EmbeddingConfig::new(config.patches() + 1, d).init(device),
                },
                pre_layrnorm: norm(),
                encoder: ClipEncoder::new(&shape, device),
                post_layernorm: norm(),
            },
            visual_projection: LinearConfig::new(d, config.projection_dim).with_bias(false).init(device),
            config: config.clone(),
        }
    }

    /// A transformers folder (`config.json`, `model.safetensors`) of this tower or of a full
    /// CLIP model (whose text tower is left out), frozen.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let config = ClipVisionConfig::load(&dir.join("config.json"))?;
        let text = ["text_model.", "text_projection.", "logit_scale"];
        load_safetensors_part(Self::new(&config, device), &weights_file(dir, "model"), &[], &text).map(Module::no_grad)
    }

    /// `pixel_values: [N, 3, S, S]`, normalised as CLIP expects, `S = image_size`.
    pub fn forward(&self, pixel_values: Tensor<4>) -> ClipVisionOutput {
        let v = &self.vision_model;
        let n = pixel_values.dims()[0];
        let d = self.config.hidden_size;
        let dtype = v.embeddings.patch_embedding.weight.val().dtype();
        let patches = v.embeddings.patch_embedding.forward(to_dtype(pixel_values, dtype)); // [N, D, g, g]
        let count = self.config.patches();
        let patches = patches.reshape([n, d, count]).swap_dims(1, 2);
        let class = v.embeddings.class_embedding.val().reshape([1, 1, d]).repeat_dim(0, n);
        let device = patches.device();
        let positions = Tensor::<1, Int>::arange(0..(count + 1) as i64, &device).reshape([1, count + 1]);
        let x = Tensor::cat(vec![class, patches], 1) + v.embeddings.position_embedding.forward(positions);
        let x = v.encoder.forward(v.pre_layrnorm.forward(x), false);
        let pooled = v.post_layernorm.forward(x.clone().narrow(1, 0, 1).reshape([n, d]));
        ClipVisionOutput {
            image_embeds: to_f32(self.visual_projection.forward(pooled.clone())),
            pooler_output: to_f32(pooled),
            last_hidden_state: to_f32(x),
        }
    }
}

/// CLIP's pixel normalisation (mean, std per RGB channel), as OpenAI's `preprocess` and
/// transformers' `CLIPImageProcessor` use it.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// Images in `[-1, 1]` (any size) as the vision tower's input: bicubic resize to its
/// `image_size`, CLIP normalisation.
pub fn clip_pixels(images: Tensor<4>, image_size: usize) -> Tensor<4> {
    use burn::nn::interpolate::{Interpolate2dConfig, InterpolateMode};
    let device = images.device();
    let resize = Interpolate2dConfig::new()
        .with_output_size(Some([image_size, image_size]))
        .with_mode(InterpolateMode::Cubic)
        .init();
    let unit = resize.forward(images).add_scalar(1.0).div_scalar(2.0);
    let mean = Tensor::<1>::from_floats(CLIP_MEAN, &device).reshape([1, 3, 1, 1]);
    let std = Tensor::<1>::from_floats(CLIP_STD, &device).reshape([1, 3, 1, 1]);
    (unit - mean) / std
}
