//! diffusers `UNet2DConditionModel` (SD-1.x): noisy latents, per-sample timesteps and text
//! states in, the noise (or v / x0) prediction out, with an optional per-sample LoRA set.
//!
//! Follows diffusers `src/diffusers/models/unets/unet_2d_condition.py`,
//! `UNet2DConditionModel.forward` (the SD-1.x path: no class or addition embeddings).

use std::path::Path;

use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::activation::silu;

use super::config::{BlockKind, UNet2DConditionConfig};
use super::unet_2d_blocks::{BlockShape, DownBlock, MidBlock, UpBlock, UpChannels};
use crate::device::{to_dtype, to_f32};
use crate::error::ModelError;
use crate::lora::{LoraSet, LoraTarget};
use crate::nn::embeddings::{TimestepEmbedding, timestep_embedding};
use crate::nn::transformer_2d::Transformer2DConfig;
use crate::nn::{conv2d, group_norm, norm};
use crate::weights::{Weights, load_safetensors, weights_file};

#[derive(Module, Debug)]
pub struct UNet2DConditionModel {
    pub conv_in: Conv2d,
    pub time_embedding: TimestepEmbedding,
    pub down_blocks: Vec<DownBlock>,
    pub mid_block: MidBlock,
    pub up_blocks: Vec<UpBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
    #[module(skip)]
    pub config: UNet2DConditionConfig,
}

impl UNet2DConditionModel {
    /// Builds the model with random weights; `config` must pass
    /// [`UNet2DConditionConfig::validate`].
    pub fn new(config: &UNet2DConditionConfig, device: &Device) -> Self {
        let channels = &config.block_out_channels;
        let levels = channels.len();
        let (temb, groups, eps) = (config.time_embed_dim(), config.norm_num_groups, config.norm_eps);
        let shape = |level: usize, cross: bool| BlockShape {
            temb,
            groups,
            eps,
            attention: cross.then(|| Transformer2DConfig {
                channels: channels[level],
                heads: config.heads(level).expect("validated heads"),
                cross_attention_dim: config.cross_attention_dim,
                layers: config.transformer_layers(level).expect("validated layers"),
                norm_groups: groups,
                use_linear_projection: config.use_linear_projection,
            }),
        };
        let down_blocks = (0..levels)
            .map(|i| {
                let c_in = if i == 0 { channels[0] } else { channels[i - 1] };
                let cross = config.down_kind(i) == BlockKind::CrossAttn;
                let path = format!("down_blocks.{i}");
                DownBlock::new(
                    c_in,
                    channels[i],
                    config.layers_per_block,
                    i + 1 < levels,
                    shape(i, cross),
                    &path,
                    device,
                )
            })
            .collect();
        let up_blocks = (0..levels)
            .map(|i| {
                // Up block i works at level `levels - 1 - i` (diffusers reverses the lists).
                let level = levels - 1 - i;
                let ch = UpChannels {
                    prev_out: channels[(level + 1).min(levels - 1)],
                    out: channels[level],
                    skip_in: channels[level.saturating_sub(1)],
                };
                let cross = config.up_kind(i) == BlockKind::CrossAttn;
                let path = format!("up_blocks.{i}");
                UpBlock::new(ch, config.layers_per_block, i + 1 < levels, shape(level, cross), &path, device)
            })
            .collect();
        Self {
            conv_in: conv2d(config.in_channels, channels[0], 3, 1, device),
            time_embedding: TimestepEmbedding::new(channels[0], temb, device),
            down_blocks,
            mid_block: MidBlock::new(channels[levels - 1], shape(levels - 1, true), "mid_block", device),
            up_blocks,
            conv_norm_out: group_norm(groups, channels[0], eps, device),
            conv_out: conv2d(channels[0], config.out_channels, 3, 1, device),
            config: config.clone(),
        }
    }

    /// A diffusers `unet/` folder: `config.json` and `diffusion_pytorch_model.safetensors`
    /// (f32, f16 or bf16). The base weights are frozen.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let config = UNet2DConditionConfig::load(&dir.join("config.json"))?;
        Self::load_weights(&config, &weights_file(dir, "diffusion_pytorch_model"), device)
    }

    /// The model of `config` with diffusers-named `weights`, frozen.
    pub fn load_weights(
        config: &UNet2DConditionConfig,
        weights: impl Into<Weights>,
        device: &Device,
    ) -> Result<Self, ModelError> {
        load_safetensors(Self::new(config, device), weights).map(Module::no_grad)
    }

    /// Every layer that can take a LoRA, with its diffusers path and shape, in module order.
    pub fn lora_targets(&self) -> Vec<LoraTarget> {
        let mut targets: Vec<LoraTarget> = self.down_blocks.iter().flat_map(DownBlock::lora_targets).collect();
        targets.extend(self.mid_block.lora_targets());
        targets.extend(self.up_blocks.iter().flat_map(UpBlock::lora_targets));
        targets
    }

    /// `sample: [N, C_in, H, W]`, `timesteps: [N]`, `context: [N, S, D]` -> `[N, C_out, H, W]`.
    /// `lora` holds one LoRA per sample (or one shared by all). Runs in the weights' dtype
    /// (see [`cast_module`](crate::device::cast_module)); the result is f32.
    pub fn forward(
        &self,
        sample: Tensor<4>,
        timesteps: Tensor<1>,
        context: Tensor<3>,
        lora: Option<&LoraSet>,
    ) -> Tensor<4> {
        let config = &self.config;
        let dtype = self.conv_in.weight.val().dtype();
        let (sample, context) = (to_dtype(sample, dtype), to_dtype(context, dtype));
        // 1. time (the sinusoids in f32, as diffusers computes them)
        let t = timestep_embedding(timesteps, config.block_out_channels[0], config.flip_sin_to_cos, config.freq_shift);
        let temb = self.time_embedding.forward(to_dtype(t, dtype));
        // 2. pre-process
        let sample = if config.center_input_sample { sample.mul_scalar(2.0).sub_scalar(1.0) } else { sample };
        let mut x = self.conv_in.forward(sample);
        // 3. down
        let mut skips = vec![x.clone()];
        for block in &self.down_blocks {
            let (out, states) = block.forward(x, temb.clone(), context.clone(), lora);
            x = out;
            skips.extend(states);
        }
        // 4. mid
        x = self.mid_block.forward(x, temb.clone(), context.clone(), lora);
        // 5. up
        for block in &self.up_blocks {
            x = block.forward(x, &mut skips, temb.clone(), context.clone(), lora);
        }
        // 6. post-process
        to_f32(self.conv_out.forward(silu(norm::group_norm(&self.conv_norm_out, x))))
    }
}
