//! Timestep embeddings (diffusers `embeddings.py`).
//!
//! Follows diffusers `src/diffusers/models/embeddings.py`: `get_timestep_embedding`, `Timesteps`,
//! `TimestepEmbedding`.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::silu;

/// diffusers `get_timestep_embedding`: `[N]` timesteps -> `[N, dim]`, sinusoids at
/// frequencies `exp(-ln(10000) i / (dim/2 - shift))`, `[cos, sin]` when `flip_sin_to_cos`.
pub fn timestep_embedding(timesteps: Tensor<1>, dim: usize, flip_sin_to_cos: bool, freq_shift: f64) -> Tensor<2> {
    let half = dim / 2;
    let device = timesteps.device();
    let exponent: Vec<f32> =
        (0..half).map(|i| (-(10000f64.ln()) * i as f64 / (half as f64 - freq_shift)).exp() as f32).collect();
    let freqs = Tensor::<1>::from_data(TensorData::new(exponent, [half]), &device);
    let n = timesteps.dims()[0];
    let args = timesteps.reshape([n, 1]) * freqs.reshape([1, half]);
    let (sin, cos) = (args.clone().sin(), args.cos());
    let emb = if flip_sin_to_cos { Tensor::cat(vec![cos, sin], 1) } else { Tensor::cat(vec![sin, cos], 1) };
    if dim % 2 == 1 { Tensor::cat(vec![emb, Tensor::zeros([n, 1], &device)], 1) } else { emb }
}

/// diffusers `TimestepEmbedding`: `linear_1 -> silu -> linear_2`.
#[derive(Module, Debug)]
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

impl TimestepEmbedding {
    pub fn new(in_channels: usize, time_embed_dim: usize, device: &Device) -> Self {
        Self {
            linear_1: LinearConfig::new(in_channels, time_embed_dim).init(device),
            linear_2: LinearConfig::new(time_embed_dim, time_embed_dim).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.linear_2.forward(silu(self.linear_1.forward(x)))
    }
}
