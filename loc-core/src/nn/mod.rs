//! Building blocks shared by the diffusers models, named like diffusers' classes and keys.
//!
//! - [`embeddings`]: sinusoidal `Timesteps` and `TimestepEmbedding`.
//! - [`norm`]: group norm as one op with its own backward on the CPU.
//! - [`resnet`]: `ResnetBlock2D`, `Downsample2D`, `Upsample2D`.
//! - [`attention`]: `Attention` (self or cross; every projection a LoRA target).
//! - [`transformer_2d`]: `Transformer2DModel`, `BasicTransformerBlock`, GEGLU feed-forward.
//! - [`gelu`]: the exact GELU, with a backward that is exact on every backend.

pub mod attention;
pub mod embeddings;
pub mod norm;
pub mod resnet;
pub mod transformer_2d;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::prelude::*;

/// A `k x k` convolution with diffusers' usual padding `k / 2`.
pub(crate) fn conv2d(c_in: usize, c_out: usize, kernel: usize, stride: usize, device: &Device) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new([c_in, c_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .init(device)
}

pub(crate) fn group_norm(groups: usize, channels: usize, eps: f64, device: &Device) -> GroupNorm {
    GroupNormConfig::new(groups, channels).with_epsilon(eps).init(device)
}

/// GELU, `x Φ(x)` with the exact erf. On the CPU backend this is burn's fused op. Elsewhere it is
/// built from `erf`, because burn-cubecl 0.22.1's GELU *backward* is off by up to 8.7e-4 (its
/// forward is exact; vendor/UPSTREAM.md, entry 2): autodiff then differentiates `erf`, which is
/// exact on every backend.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.device().inner() == Device::flex() {
        return burn::tensor::activation::gelu(x);
    }
    x.clone() * x.div_scalar(std::f64::consts::SQRT_2).erf().add_scalar(1.0).mul_scalar(0.5)
}

/// `prefix.name`, or `name` at the root.
pub(crate) fn join(prefix: &str, name: impl std::fmt::Display) -> String {
    if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") }
}
