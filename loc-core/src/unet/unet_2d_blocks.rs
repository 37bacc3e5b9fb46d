//! diffusers `unet_2d_blocks.py`: the down, mid and up blocks of SD-1.x. A `DownBlock2D` is a
//! down block without attentions; likewise for up blocks.
//!
//! Follows diffusers `src/diffusers/models/unets/unet_2d_blocks.py`: `CrossAttnDownBlock2D`,
//! `DownBlock2D`, `UNetMidBlock2DCrossAttn`, `CrossAttnUpBlock2D`, `UpBlock2D`.

use burn::prelude::*;

use crate::lora::{LoraSet, LoraTarget};
use crate::nn::join;
use crate::nn::resnet::{Downsample2D, ResnetBlock2D, Upsample2D};
use crate::nn::transformer_2d::{Transformer2DConfig, Transformer2DModel};

/// Channel and attention settings a block needs.
#[derive(Clone, Copy, Debug)]
pub struct BlockShape {
    pub temb: usize,
    pub groups: usize,
    pub eps: f64,
    /// `None` for blocks without attention.
    pub attention: Option<Transformer2DConfig>,
}

fn attentions(
    shape: &BlockShape,
    channels: usize,
    count: usize,
    path: &str,
    device: &Device,
) -> Vec<Transformer2DModel> {
    let Some(config) = shape.attention else { return Vec::new() };
    (0..count)
        .map(|j| {
            Transformer2DModel::new(
                Transformer2DConfig { channels, ..config },
                &join(path, format!("attentions.{j}")),
                device,
            )
        })
        .collect()
}

fn targets(attentions: &[Transformer2DModel]) -> Vec<LoraTarget> {
    attentions.iter().flat_map(Transformer2DModel::lora_targets).collect()
}

/// `CrossAttnDownBlock2D` / `DownBlock2D`: resnets (each followed by a transformer when
/// there is attention), then an optional downsampler.
#[derive(Module, Debug)]
pub struct DownBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
    pub downsamplers: Vec<Downsample2D>,
}

impl DownBlock {
    pub fn new(
        c_in: usize,
        c_out: usize,
        layers: usize,
        downsample: bool,
        shape: BlockShape,
        path: &str,
        device: &Device,
    ) -> Self {
        Self {
            resnets: (0..layers)
                .map(|j| {
                    ResnetBlock2D::new(
                        if j == 0 { c_in } else { c_out },
                        c_out,
                        Some(shape.temb),
                        shape.groups,
                        shape.eps,
                        device,
                    )
                })
                .collect(),
            attentions: attentions(&shape, c_out, layers, path, device),
            downsamplers: if downsample { vec![Downsample2D::new(c_out, device)] } else { Vec::new() },
        }
    }

    pub fn lora_targets(&self) -> Vec<LoraTarget> {
        targets(&self.attentions)
    }

    /// Returns the output and every intermediate state for the skip connections.
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        temb: Tensor<2>,
        context: Tensor<3>,
        lora: Option<&LoraSet>,
    ) -> (Tensor<4>, Vec<Tensor<4>>) {
        let mut states = Vec::new();
        for (j, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(x, Some(temb.clone()));
            if let Some(attention) = self.attentions.get(j) {
                x = attention.forward(x, context.clone(), lora);
            }
            states.push(x.clone());
        }
        for downsampler in &self.downsamplers {
            x = downsampler.forward(x);
            states.push(x.clone());
        }
        (x, states)
    }
}

/// `UNetMidBlock2DCrossAttn`: resnet, then (transformer, resnet) pairs.
#[derive(Module, Debug)]
pub struct MidBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
}

impl MidBlock {
    pub fn new(channels: usize, shape: BlockShape, path: &str, device: &Device) -> Self {
        let resnet = || ResnetBlock2D::new(channels, channels, Some(shape.temb), shape.groups, shape.eps, device);
        Self { resnets: vec![resnet(), resnet()], attentions: attentions(&shape, channels, 1, path, device) }
    }

    pub fn lora_targets(&self) -> Vec<LoraTarget> {
        targets(&self.attentions)
    }

    pub fn forward(&self, x: Tensor<4>, temb: Tensor<2>, context: Tensor<3>, lora: Option<&LoraSet>) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, Some(temb.clone()));
        for (attention, resnet) in self.attentions.iter().zip(&self.resnets[1..]) {
            x = resnet.forward(attention.forward(x, context.clone(), lora), Some(temb.clone()));
        }
        x
    }
}

/// `CrossAttnUpBlock2D` / `UpBlock2D`: `layers + 1` resnets, each taking a skip connection,
/// each followed by a transformer when there is attention, then an optional upsampler.
#[derive(Module, Debug)]
pub struct UpBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
    pub upsamplers: Vec<Upsample2D>,
}

/// Channels of an up block: what comes from below, what it outputs, and the skip channels
/// of its last resnet (the input channels of the matching down block).
#[derive(Clone, Copy, Debug)]
pub struct UpChannels {
    pub prev_out: usize,
    pub out: usize,
    pub skip_in: usize,
}

impl UpBlock {
    pub fn new(ch: UpChannels, layers: usize, upsample: bool, shape: BlockShape, path: &str, device: &Device) -> Self {
        let resnets = (0..=layers)
            .map(|j| {
                let skip = if j == layers { ch.skip_in } else { ch.out };
                let input = if j == 0 { ch.prev_out } else { ch.out };
                ResnetBlock2D::new(input + skip, ch.out, Some(shape.temb), shape.groups, shape.eps, device)
            })
            .collect();
        Self {
            resnets,
            attentions: attentions(&shape, ch.out, layers + 1, path, device),
            upsamplers: if upsample { vec![Upsample2D::new(ch.out, device)] } else { Vec::new() },
        }
    }

    pub fn lora_targets(&self) -> Vec<LoraTarget> {
        targets(&self.attentions)
    }

    /// Takes its skip connections from the end of `skips`; `size` is the resolution to
    /// upsample to (the next skip connection's).
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        skips: &mut Vec<Tensor<4>>,
        temb: Tensor<2>,
        context: Tensor<3>,
        lora: Option<&LoraSet>,
    ) -> Tensor<4> {
        for (j, resnet) in self.resnets.iter().enumerate() {
            let skip = skips.pop().expect("a skip connection per up-block resnet");
            x = resnet.forward(Tensor::cat(vec![x, skip], 1), Some(temb.clone()));
            if let Some(attention) = self.attentions.get(j) {
                x = attention.forward(x, context.clone(), lora);
            }
        }
        for upsampler in &self.upsamplers {
            let [_, _, h, w] = skips.last().map_or_else(|| x.dims(), |s| s.dims());
            x = upsampler.forward(x, [h, w]);
        }
        x
    }
}
