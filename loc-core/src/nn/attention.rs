//! diffusers `Attention` (attention_processor.py) with the default processor: multi-head
//! scaled dot-product attention, every projection a LoRA target.
//!
//! Follows diffusers `src/diffusers/models/attention_processor.py`: `Attention` with
//! `AttnProcessor2_0`.

use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use burn::nn::GroupNorm;

use super::{group_norm, join, norm};
use crate::lora::{LoraLayerConfig, LoraLinear, LoraSet, LoraTarget};

fn projection(d_in: usize, d_out: usize, bias: bool, path: &str, name: &str, device: &Device) -> LoraLinear {
    LoraLayerConfig::new(d_in, d_out).with_bias(bias).init_linear(join(path, name), device)
}

/// `to_q`, `to_k`, `to_v` (biased or not) and `to_out.0` (biased); the VAE's spatial
/// attention also has a `group_norm`.
#[derive(Module, Debug)]
pub struct Attention {
    pub group_norm: Option<GroupNorm>,
    pub to_q: LoraLinear,
    pub to_k: LoraLinear,
    pub to_v: LoraLinear,
    pub to_out: Vec<LoraLinear>,
    #[module(skip)]
    pub heads: usize,
}

impl Attention {
    /// `query_dim` channels attend over `context_dim` channels (`None`: self-attention) with
    /// `heads` heads of `dim_head`, unbiased `to_q/k/v` (the transformer blocks' attention);
    /// `path` is the diffusers module path (`...attn1`).
    pub fn new(
        query_dim: usize,
        context_dim: Option<usize>,
        heads: usize,
        dim_head: usize,
        path: &str,
        device: &Device,
    ) -> Self {
        let inner = heads * dim_head;
        let context = context_dim.unwrap_or(query_dim);
        Self {
            group_norm: None,
            to_q: projection(query_dim, inner, false, path, "to_q", device),
            to_k: projection(context, inner, false, path, "to_k", device),
            to_v: projection(context, inner, false, path, "to_v", device),
            to_out: vec![projection(inner, query_dim, true, path, "to_out.0", device)],
            heads,
        }
    }

    /// The VAE's single-head spatial self-attention: `group_norm`, biased projections.
    pub fn spatial(channels: usize, groups: usize, eps: f64, path: &str, device: &Device) -> Self {
        let projection = |name| projection(channels, channels, true, path, name, device);
        Self {
            group_norm: Some(group_norm(groups, channels, eps, device)),
            to_q: projection("to_q"),
            to_k: projection("to_k"),
            to_v: projection("to_v"),
            to_out: vec![projection("to_out.0")],
            heads: 1,
        }
    }

    /// `x: [N, C, H, W]`: group norm, self-attention over the pixels, residual.
    pub fn forward_spatial(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let normed = match &self.group_norm {
            Some(layer) => norm::group_norm(layer, x.clone()),
            None => x.clone(),
        };
        let tokens = normed.reshape([n, c, h * w]).swap_dims(1, 2);
        let out = self.forward(tokens, None, None);
        out.swap_dims(1, 2).reshape([n, c, h, w]) + x
    }

    pub fn lora_targets(&self) -> Vec<LoraTarget> {
        [&self.to_q, &self.to_k, &self.to_v, &self.to_out[0]].into_iter().map(|l| l.target.clone()).collect()
    }

    /// `x: [N, L, C]`, `context: [N, S, C_ctx]` (`None`: self-attention) -> `[N, L, C]`.
    pub fn forward(&self, x: Tensor<3>, context: Option<Tensor<3>>, lora: Option<&LoraSet>) -> Tensor<3> {
        let context = context.unwrap_or_else(|| x.clone());
        let q = self.to_q.forward_lora(x, lora);
        let k = self.to_k.forward_lora(context.clone(), lora);
        let v = self.to_v.forward_lora(context, lora);
        self.to_out[0].forward_lora(multi_head_attention(q, k, v, self.heads, false), lora)
    }
}

/// Multi-head scaled dot-product attention on projected tokens: `q: [N, L, D]` over
/// `k`, `v: [N, S, D]`, split into `heads` heads of `D / heads`, attended with burn's fused
/// kernel (`causal`: each query sees only itself and earlier keys) and merged back to
/// `[N, L, D]`. Every attention of the workspace (diffusers, CLIP, ViT, `H`) runs through it.
pub fn multi_head_attention(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, heads: usize, causal: bool) -> Tensor<3> {
    let [n, l, d] = q.dims();
    let split = |t: Tensor<3>| {
        let s = t.dims()[1];
        t.reshape([n, s, heads, d / heads]).swap_dims(1, 2)
    };
    let options = AttentionModuleOptions { is_causal: causal, ..Default::default() };
    attention(split(q), split(k), split(v), None, None, options).swap_dims(1, 2).reshape([n, l, d])
}
