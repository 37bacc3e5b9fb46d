//! diffusers `resnet.py` / `downsampling.py` / `upsampling.py`.
//!
//! Follows diffusers `src/diffusers/models/resnet.py` (`ResnetBlock2D`), `models/downsampling.py`
//! (`Downsample2D`), `models/upsampling.py` (`Upsample2D`).

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::interpolate::{Interpolate2dConfig, InterpolateMode};
use burn::nn::{GroupNorm, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::silu;

use super::{conv2d, group_norm, norm};

/// `norm1 -> silu -> conv1 (+ time_emb_proj(silu(temb))) -> norm2 -> silu -> conv2`, plus the
/// input (through `conv_shortcut` when the channel count changes). VAE blocks have no time
/// embedding.
#[derive(Module, Debug)]
pub struct ResnetBlock2D {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    pub time_emb_proj: Option<Linear>,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    pub conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    pub fn new(c_in: usize, c_out: usize, temb: Option<usize>, groups: usize, eps: f64, device: &Device) -> Self {
        Self {
            norm1: group_norm(groups, c_in, eps, device),
            conv1: conv2d(c_in, c_out, 3, 1, device),
            time_emb_proj: temb.map(|t| LinearConfig::new(t, c_out).init(device)),
            norm2: group_norm(groups, c_out, eps, device),
            conv2: conv2d(c_out, c_out, 3, 1, device),
            conv_shortcut: (c_in != c_out).then(|| conv2d(c_in, c_out, 1, 1, device)),
        }
    }

    /// `x: [N, C_in, H, W]`, `temb: [N, T]` -> `[N, C_out, H, W]`.
    pub fn forward(&self, x: Tensor<4>, temb: Option<Tensor<2>>) -> Tensor<4> {
        let mut h = self.conv1.forward(silu(norm::group_norm(&self.norm1, x.clone())));
        if let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb) {
            let [n, c, _, _] = h.dims();
            h = h + proj.forward(silu(temb)).reshape([n, c, 1, 1]);
        }
        let h = self.conv2.forward(silu(norm::group_norm(&self.norm2, h)));
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        shortcut + h
    }
}

/// A 3x3 convolution with stride 2.
#[derive(Module, Debug)]
pub struct Downsample2D {
    pub conv: Conv2d,
}

impl Downsample2D {
    /// Padding 1 on every side (UNet).
    pub fn new(channels: usize, device: &Device) -> Self {
        Self { conv: conv2d(channels, channels, 3, 2, device) }
    }

    /// Padding only at the bottom and right (the VAE encoder's `padding=0` variant).
    pub fn new_asymmetric(channels: usize, device: &Device) -> Self {
        let conv = Conv2dConfig::new([channels, channels], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(0, 0, 1, 1))
            .init(device);
        Self { conv }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(x)
    }
}

/// Nearest-neighbour 2x (or to the skip connection's size), then a 3x3 convolution.
#[derive(Module, Debug)]
pub struct Upsample2D {
    pub conv: Conv2d,
}

impl Upsample2D {
    pub fn new(channels: usize, device: &Device) -> Self {
        Self { conv: conv2d(channels, channels, 3, 1, device) }
    }

    /// Upsamples to `size` (`[H, W]`).
    pub fn forward(&self, x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
        let up = Interpolate2dConfig::new().with_output_size(Some(size)).with_mode(InterpolateMode::Nearest).init();
        self.conv.forward(up.forward(x))
    }
}
