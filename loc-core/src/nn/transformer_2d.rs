//! diffusers `Transformer2DModel` with `BasicTransformerBlock`s (SD-1.x spatial transformer).
//!
//! Follows diffusers `src/diffusers/models/transformers/transformer_2d.py` (`Transformer2DModel`),
//! `models/attention.py` (`BasicTransformerBlock`, `FeedForward`), `models/activations.py`
//! (`GEGLU`).

use burn::nn::{Dropout, DropoutConfig, GroupNorm, LayerNorm, LayerNormConfig};
use burn::prelude::*;

use super::attention::Attention;
use super::{gelu, group_norm, join, norm};
use crate::lora::{LoraConv1x1, LoraLayerConfig, LoraLinear, LoraSet, LoraTarget};

/// GEGLU: `proj` to twice the width, then `hidden * gelu(gate)`.
#[derive(Module, Debug)]
pub struct GeGlu {
    pub proj: LoraLinear,
}

/// diffusers `FeedForward` with GEGLU. `net` is a tuple so that the keys are exactly
/// `ff.net.0.proj` and `ff.net.2` (index 1 is dropout, without weights).
#[derive(Module, Debug)]
pub struct FeedForward {
    pub net: (GeGlu, Dropout, LoraLinear),
}

impl FeedForward {
    pub fn new(dim: usize, path: &str, device: &Device) -> Self {
        let inner = 4 * dim;
        let proj = LoraLayerConfig::new(dim, 2 * inner).init_linear(join(path, "net.0.proj"), device);
        let out = LoraLayerConfig::new(inner, dim).init_linear(join(path, "net.2"), device);
        Self { net: (GeGlu { proj }, DropoutConfig::new(0.0).init(), out) }
    }

    pub fn forward(&self, x: Tensor<3>, lora: Option<&LoraSet>) -> Tensor<3> {
        let h = self.net.0.proj.forward_lora(x, lora);
        let inner = h.dims()[2] / 2;
        let (hidden, gate) = (h.clone().narrow(2, 0, inner), h.narrow(2, inner, inner));
        self.net.2.forward_lora(hidden * gelu(gate), lora)
    }
}

/// Self-attention, cross-attention and feed-forward, each after a LayerNorm, each residual.
#[derive(Module, Debug)]
pub struct BasicTransformerBlock {
    pub norm1: LayerNorm,
    pub attn1: Attention,
    pub norm2: LayerNorm,
    pub attn2: Attention,
    pub norm3: LayerNorm,
    pub ff: FeedForward,
}

impl BasicTransformerBlock {
    pub fn new(dim: usize, heads: usize, cross_attention_dim: usize, path: &str, device: &Device) -> Self {
        let head_dim = dim / heads;
        let norm = || LayerNormConfig::new(dim).with_epsilon(1e-5).init(device);
        Self {
            norm1: norm(),
            attn1: Attention::new(dim, None, heads, head_dim, &join(path, "attn1"), device),
            norm2: norm(),
            attn2: Attention::new(dim, Some(cross_attention_dim), heads, head_dim, &join(path, "attn2"), device),
            norm3: norm(),
            ff: FeedForward::new(dim, &join(path, "ff"), device),
        }
    }

    pub fn forward(&self, x: Tensor<3>, context: Tensor<3>, lora: Option<&LoraSet>) -> Tensor<3> {
        let x = self.attn1.forward(self.norm1.forward(x.clone()), None, lora) + x;
        let x = self.attn2.forward(self.norm2.forward(x.clone()), Some(context), lora) + x;
        self.ff.forward(self.norm3.forward(x.clone()), lora) + x
    }
}

/// `proj_in` / `proj_out`: 1x1 convolutions, or linear layers with `use_linear_projection`.
#[derive(Module, Debug)]
pub enum Projection {
    Conv(LoraConv1x1),
    Linear(LoraLinear),
}

impl Projection {
    fn new(dim: usize, linear: bool, path: String, device: &Device) -> Self {
        let config = LoraLayerConfig::new(dim, dim);
        if linear {
            Projection::Linear(config.init_linear(path, device))
        } else {
            Projection::Conv(config.init_conv1x1(path, device))
        }
    }

    fn target(&self) -> LoraTarget {
        match self {
            Projection::Conv(layer) => layer.target.clone(),
            Projection::Linear(layer) => layer.target.clone(),
        }
    }
}

/// GroupNorm, `proj_in`, transformer blocks over the `H·W` tokens, `proj_out`, residual.
#[derive(Module, Debug)]
pub struct Transformer2DModel {
    pub norm: GroupNorm,
    pub proj_in: Projection,
    pub transformer_blocks: Vec<BasicTransformerBlock>,
    pub proj_out: Projection,
}

/// How a [`Transformer2DModel`] is shaped.
#[derive(Clone, Copy, Debug)]
pub struct Transformer2DConfig {
    pub channels: usize,
    pub heads: usize,
    pub cross_attention_dim: usize,
    pub layers: usize,
    pub norm_groups: usize,
    pub use_linear_projection: bool,
}

impl Transformer2DModel {
    pub fn new(config: Transformer2DConfig, path: &str, device: &Device) -> Self {
        let c = config.channels;
        Self {
            norm: group_norm(config.norm_groups, c, 1e-6, device),
            proj_in: Projection::new(c, config.use_linear_projection, join(path, "proj_in"), device),
            transformer_blocks: (0..config.layers)
                .map(|i| {
                    let block_path = join(path, format!("transformer_blocks.{i}"));
                    BasicTransformerBlock::new(c, config.heads, config.cross_attention_dim, &block_path, device)
                })
                .collect(),
            proj_out: Projection::new(c, config.use_linear_projection, join(path, "proj_out"), device),
        }
    }

    /// Every layer that can take a LoRA, in module order.
    pub fn lora_targets(&self) -> Vec<LoraTarget> {
        let mut targets = vec![self.proj_in.target()];
        for block in &self.transformer_blocks {
            targets.extend(block.attn1.lora_targets());
            targets.extend(block.attn2.lora_targets());
            targets.push(block.ff.net.0.proj.target.clone());
            targets.push(block.ff.net.2.target.clone());
        }
        targets.push(self.proj_out.target());
        targets
    }

    /// `x: [N, C, H, W]`, `context: [N, S, D]` -> `[N, C, H, W]`.
    pub fn forward(&self, x: Tensor<4>, context: Tensor<3>, lora: Option<&LoraSet>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let residual = x.clone();
        let x = norm::group_norm(&self.norm, x);
        let tokens = |x: Tensor<4>| x.reshape([n, c, h * w]).swap_dims(1, 2);
        let mut x = match &self.proj_in {
            Projection::Conv(conv) => tokens(conv.forward_lora(x, lora)),
            Projection::Linear(linear) => linear.forward_lora(tokens(x), lora),
        };
        for block in &self.transformer_blocks {
            x = block.forward(x, context.clone(), lora);
        }
        let image = |x: Tensor<3>| x.swap_dims(1, 2).reshape([n, c, h, w]);
        let x = match &self.proj_out {
            Projection::Conv(conv) => conv.forward_lora(image(x), lora),
            Projection::Linear(linear) => image(linear.forward_lora(x, lora)),
        };
        x + residual
    }
}
