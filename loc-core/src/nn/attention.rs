//! diffusers `Attention` (attention_processor.py) with the default processor: multi-head
//! scaled dot-product attention, every projection a LoRA target.

use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::join;
use crate::lora::{LoraLayerConfig, LoraLinear, LoraSet, LoraTarget};

/// `to_q`, `to_k`, `to_v` (no bias) and `to_out.0` (with bias).
#[derive(Module, Debug)]
pub struct Attention {
    pub to_q: LoraLinear,
    pub to_k: LoraLinear,
    pub to_v: LoraLinear,
    pub to_out: Vec<LoraLinear>,
    #[module(skip)]
    pub heads: usize,
}

impl Attention {
    /// `query_dim` channels attend over `context_dim` channels (`None`: self-attention) with
    /// `heads` heads of `dim_head`; `path` is the diffusers module path (`...attn1`).
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
        let projection = |d_in, d_out, bias, name: &str| {
            LoraLayerConfig::new(d_in, d_out).with_bias(bias).init_linear(join(path, name), device)
        };
        Self {
            to_q: projection(query_dim, inner, false, "to_q"),
            to_k: projection(context, inner, false, "to_k"),
            to_v: projection(context, inner, false, "to_v"),
            to_out: vec![projection(inner, query_dim, true, "to_out.0")],
            heads,
        }
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
        let [n, l, inner] = q.dims();
        let split = |t: Tensor<3>| {
            let s = t.dims()[1];
            t.reshape([n, s, self.heads, inner / self.heads]).swap_dims(1, 2)
        };
        let out = attention(split(q), split(k), split(v), None, None, AttentionModuleOptions::default());
        self.to_out[0].forward_lora(out.swap_dims(1, 2).reshape([n, l, inner]), lora)
    }
}
