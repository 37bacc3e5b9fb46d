//! diffusers `AutoencoderKL` (Stable Diffusion's VAE): images in `[-1, 1]` to a diagonal
//! Gaussian over latents, and latents back to images. Old checkpoints' attention names
//! (`query`, `key`, `value`, `proj_attn`) load too.
//!
//! Follows diffusers `src/diffusers/models/autoencoders/autoencoder_kl.py` (`AutoencoderKL`) and
//! `models/autoencoders/vae.py` (`Encoder`, `Decoder`, `DiagonalGaussianDistribution`).

use std::path::Path;

use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::activation::silu;
use serde::Deserialize;

use crate::device::{to_dtype, to_f32};
use crate::error::ModelError;
use crate::nn::attention::Attention;
use crate::nn::resnet::{Downsample2D, ResnetBlock2D, Upsample2D};
use crate::nn::{conv2d, group_norm, join, norm};
use crate::weights::{Weights, load_safetensors_remapped, read_config, weights_file};

/// The VAE's norms use this epsilon throughout.
const EPS: f64 = 1e-6;

/// `vae/config.json` (unknown keys ignored).
#[derive(Clone, Debug, Deserialize)]
pub struct AutoencoderKLConfig {
    #[serde(default = "three")]
    pub in_channels: usize,
    #[serde(default = "three")]
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "one")]
    pub layers_per_block: usize,
    #[serde(default = "four")]
    pub latent_channels: usize,
    #[serde(default = "thirty_two")]
    pub norm_num_groups: usize,
    #[serde(default = "scaling_factor")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub down_block_types: Vec<String>,
    #[serde(default)]
    pub up_block_types: Vec<String>,
    #[serde(default = "yes")]
    pub use_quant_conv: bool,
    #[serde(default = "yes")]
    pub use_post_quant_conv: bool,
    #[serde(default = "yes")]
    pub mid_block_add_attention: bool,
}

fn three() -> usize {
    3
}
fn one() -> usize {
    1
}
fn four() -> usize {
    4
}
fn thirty_two() -> usize {
    32
}
fn scaling_factor() -> f64 {
    0.18215
}
fn yes() -> bool {
    true
}

impl AutoencoderKLConfig {
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let config: Self = read_config(path)?;
        let err = |field: &str, problem: String| ModelError::Config {
            path: path.to_path_buf(),
            field: field.into(),
            problem,
        };
        if config.block_out_channels.is_empty() {
            return Err(err("block_out_channels", "is empty".into()));
        }
        for (field, kinds, expected) in [
            ("down_block_types", &config.down_block_types, "DownEncoderBlock2D"),
            ("up_block_types", &config.up_block_types, "UpDecoderBlock2D"),
        ] {
            if kinds.len() != config.block_out_channels.len() {
                return Err(err(
                    field,
                    format!("has {} entries, block_out_channels has {}", kinds.len(), config.block_out_channels.len()),
                ));
            }
            if let Some(other) = kinds.iter().find(|k| *k != expected) {
                return Err(err(field, format!("`{other}` is not supported ({expected})")));
            }
        }
        if let Some(c) = config
            .block_out_channels
            .iter()
            .find(|c| config.norm_num_groups == 0 || !c.is_multiple_of(config.norm_num_groups))
        {
            return Err(err("norm_num_groups", format!("{} does not divide {c} channels", config.norm_num_groups)));
        }
        Ok(config)
    }

    /// Stable Diffusion 1.x's VAE (8x downsampling, 4 latent channels, ~84M parameters).
    pub fn sd15() -> Self {
        Self::with_blocks(&[128, 256, 512, 512], 2, 32)
    }

    /// A small VAE for tests and CPU benches (4x downsampling).
    pub fn tiny() -> Self {
        Self::with_blocks(&[8, 16, 16], 1, 4)
    }

    fn with_blocks(channels: &[usize], layers_per_block: usize, norm_num_groups: usize) -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            block_out_channels: channels.to_vec(),
            layers_per_block,
            latent_channels: 4,
            norm_num_groups,
            scaling_factor: scaling_factor(),
            down_block_types: vec!["DownEncoderBlock2D".into(); channels.len()],
            up_block_types: vec!["UpDecoderBlock2D".into(); channels.len()],
            use_quant_conv: true,
            use_post_quant_conv: true,
            mid_block_add_attention: true,
        }
    }
}

/// `UNetMidBlock2D` without time embedding: resnet, spatial attention, resnet.
#[derive(Module, Debug)]
pub struct VaeMidBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Attention>,
}

impl VaeMidBlock {
    fn new(channels: usize, groups: usize, attention: bool, path: &str, device: &Device) -> Self {
        let resnet = || ResnetBlock2D::new(channels, channels, None, groups, EPS, device);
        let attentions = if attention {
            vec![Attention::spatial(channels, groups, EPS, &join(path, "attentions.0"), device)]
        } else {
            vec![]
        };
        Self { resnets: vec![resnet(), resnet()], attentions }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, None);
        for attention in &self.attentions {
            x = attention.forward_spatial(x);
        }
        self.resnets[1].forward(x, None)
    }
}

/// `DownEncoderBlock2D`.
#[derive(Module, Debug)]
pub struct DownEncoderBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub downsamplers: Vec<Downsample2D>,
}

/// `UpDecoderBlock2D`.
#[derive(Module, Debug)]
pub struct UpDecoderBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub upsamplers: Vec<Upsample2D>,
}

fn resnets(c_in: usize, c_out: usize, count: usize, groups: usize, device: &Device) -> Vec<ResnetBlock2D> {
    (0..count)
        .map(|j| ResnetBlock2D::new(if j == 0 { c_in } else { c_out }, c_out, None, groups, EPS, device))
        .collect()
}

#[derive(Module, Debug)]
pub struct Encoder {
    pub conv_in: Conv2d,
    pub down_blocks: Vec<DownEncoderBlock>,
    pub mid_block: VaeMidBlock,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

#[derive(Module, Debug)]
pub struct Decoder {
    pub conv_in: Conv2d,
    pub mid_block: VaeMidBlock,
    pub up_blocks: Vec<UpDecoderBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

/// `q(z | x)`: mean and log-variance per latent element.
#[derive(Clone, Debug)]
pub struct LatentDistribution {
    pub mean: Tensor<4>,
    /// Clamped to `[-30, 20]`, as diffusers does.
    pub logvar: Tensor<4>,
}

impl LatentDistribution {
    /// The most likely latents (InstructPix2Pix's condition latents).
    pub fn mode(&self) -> Tensor<4> {
        self.mean.clone()
    }

    /// `mean + std · noise` with the caller's noise (reproducible).
    pub fn sample(&self, noise: Tensor<4>) -> Tensor<4> {
        self.mean.clone() + self.logvar.clone().mul_scalar(0.5).exp() * noise
    }
}

#[derive(Module, Debug)]
pub struct AutoencoderKL {
    pub encoder: Encoder,
    pub decoder: Decoder,
    pub quant_conv: Option<Conv2d>,
    pub post_quant_conv: Option<Conv2d>,
    #[module(skip)]
    pub config: AutoencoderKLConfig,
}

impl AutoencoderKL {
    pub fn new(config: &AutoencoderKLConfig, device: &Device) -> Self {
        let ch = &config.block_out_channels;
        let (levels, groups, z) = (ch.len(), config.norm_num_groups, config.latent_channels);
        let layers = config.layers_per_block;
        let down_blocks = (0..levels)
            .map(|i| DownEncoderBlock {
                resnets: resnets(if i == 0 { ch[0] } else { ch[i - 1] }, ch[i], layers, groups, device),
                downsamplers: if i + 1 < levels { vec![Downsample2D::new_asymmetric(ch[i], device)] } else { vec![] },
            })
            .collect();
        let up_blocks = (0..levels)
            .map(|i| {
                let (prev, out) = (ch[levels - i.max(1)], ch[levels - 1 - i]);
                UpDecoderBlock {
                    resnets: resnets(prev, out, layers + 1, groups, device),
                    upsamplers: if i + 1 < levels { vec![Upsample2D::new(out, device)] } else { vec![] },
                }
            })
            .collect();
        let top = ch[levels - 1];
        Self {
            encoder: Encoder {
                conv_in: conv2d(config.in_channels, ch[0], 3, 1, device),
                down_blocks,
                mid_block: VaeMidBlock::new(top, groups, config.mid_block_add_attention, "encoder.mid_block", device),
                conv_norm_out: group_norm(groups, top, EPS, device),
                conv_out: conv2d(top, 2 * z, 3, 1, device),
            },
            decoder: Decoder {
                conv_in: conv2d(z, top, 3, 1, device),
                mid_block: VaeMidBlock::new(top, groups, config.mid_block_add_attention, "decoder.mid_block", device),
                up_blocks,
                conv_norm_out: group_norm(groups, ch[0], EPS, device),
                conv_out: conv2d(ch[0], config.out_channels, 3, 1, device),
            },
            quant_conv: config.use_quant_conv.then(|| conv2d(2 * z, 2 * z, 1, 1, device)),
            post_quant_conv: config.use_post_quant_conv.then(|| conv2d(z, z, 1, 1, device)),
            config: config.clone(),
        }
    }

    /// A diffusers `vae/` folder (`config.json`, `diffusion_pytorch_model.safetensors`), frozen.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let config = AutoencoderKLConfig::load(&dir.join("config.json"))?;
        Self::load_weights(&config, &weights_file(dir, "diffusion_pytorch_model"), device)
    }

    /// The model of `config` with diffusers-named `weights` (old attention names too), frozen.
    pub fn load_weights(
        config: &AutoencoderKLConfig,
        weights: impl Into<Weights>,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let old_names = [
            (r"\.query\.", ".to_q."),
            (r"\.key\.", ".to_k."),
            (r"\.value\.", ".to_v."),
            (r"\.proj_attn\.", ".to_out.0."),
        ];
        load_safetensors_remapped(Self::new(config, device), weights, &old_names).map(Module::no_grad)
    }

    /// `x: [N, 3, H, W]` in `[-1, 1]` -> the latent distribution (`[N, z, H/f, W/f]`), in f32
    /// whatever the weights' dtype.
    pub fn encode(&self, x: Tensor<4>) -> LatentDistribution {
        let e = &self.encoder;
        let mut h = e.conv_in.forward(to_dtype(x, e.conv_in.weight.val().dtype()));
        for block in &e.down_blocks {
            for resnet in &block.resnets {
                h = resnet.forward(h, None);
            }
            for down in &block.downsamplers {
                h = down.forward(h);
            }
        }
        h = e.mid_block.forward(h);
        let mut moments = e.conv_out.forward(silu(norm::group_norm(&e.conv_norm_out, h)));
        if let Some(conv) = &self.quant_conv {
            moments = conv.forward(moments);
        }
        let z = self.config.latent_channels;
        let moments = to_f32(moments);
        let mean = moments.clone().narrow(1, 0, z);
        let logvar = moments.narrow(1, z, z).clamp(-30.0, 20.0);
        LatentDistribution { mean, logvar }
    }

    /// Latents (unscaled) -> images in about `[-1, 1]`, in f32 whatever the weights' dtype.
    pub fn decode(&self, z: Tensor<4>) -> Tensor<4> {
        let d = &self.decoder;
        let z = to_dtype(z, d.conv_in.weight.val().dtype());
        let z = match &self.post_quant_conv {
            Some(conv) => conv.forward(z),
            None => z,
        };
        let mut h = d.mid_block.forward(d.conv_in.forward(z));
        for block in &d.up_blocks {
            for resnet in &block.resnets {
                h = resnet.forward(h, None);
            }
            for up in &block.upsamplers {
                let [_, _, height, width] = h.dims();
                h = up.forward(h, [2 * height, 2 * width]);
            }
        }
        to_f32(d.conv_out.forward(silu(norm::group_norm(&d.conv_norm_out, h))))
    }

    /// The factor that scales latents to unit variance for the UNet.
    pub fn scaling_factor(&self) -> f64 {
        self.config.scaling_factor
    }
}
