//! LoRA-aware layers: a frozen base layer plus a per-sample low-rank path.
//!
//! Weights are kept in the PyTorch orientation (`[d_out, d_in]`, `[d_out, d_in, 1, 1]`), the
//! orientation of diffusers files and of LoRA factors, so that loading, merging and export
//! are name mapping with no transposes to get wrong.

use burn::module::{Initializer, Param};
use burn::prelude::*;
use burn::tensor::module::{conv2d, linear};
use burn::tensor::ops::ConvOptions;

use super::merge::{add_to_weight, sample_weight_delta};
use super::{LoraDelta, LoraSet, LoraTarget};

/// burn's `nn::Linear` default (Kaiming-uniform with fan-in): real weights replace it on load.
fn kaiming_uniform() -> Initializer {
    Initializer::KaimingUniform { gain: 1.0 / 3.0f64.sqrt(), fan_out_only: false }
}

/// Creates a [`LoraLinear`] or [`LoraConv1x1`] with frozen, Kaiming-initialised weights.
#[derive(Config, Debug)]
pub struct LoraLayerConfig {
    pub d_input: usize,
    pub d_output: usize,
    #[config(default = true)]
    pub bias: bool,
}

impl LoraLayerConfig {
    fn init_params<const D: usize>(
        &self,
        shape: [usize; D],
        device: &Device,
    ) -> (Param<Tensor<D>>, Option<Param<Tensor<1>>>) {
        let (fan_in, fan_out) = (Some(self.d_input), Some(self.d_output));
        let weight = kaiming_uniform().init_with(shape, fan_in, fan_out, device).set_require_grad(false);
        let bias = self
            .bias
            .then(|| kaiming_uniform().init_with([self.d_output], fan_in, fan_out, device).set_require_grad(false));
        (weight, bias)
    }

    /// A linear target at `path` (diffusers naming).
    pub fn init_linear(&self, path: impl Into<String>, device: &Device) -> LoraLinear {
        let (weight, bias) = self.init_params([self.d_output, self.d_input], device);
        LoraLinear { weight, bias, target: LoraTarget::linear(path, self.d_input, self.d_output) }
    }

    /// A 1x1 convolution target at `path` (diffusers naming).
    pub fn init_conv1x1(&self, path: impl Into<String>, device: &Device) -> LoraConv1x1 {
        let (weight, bias) = self.init_params([self.d_output, self.d_input, 1, 1], device);
        LoraConv1x1 { weight, bias, target: LoraTarget::conv1x1(path, self.d_input, self.d_output) }
    }
}

/// Panics with the target's name when a delta does not fit: a wiring bug, not bad input.
fn assert_fits(target: &LoraTarget, delta: &LoraDelta, batch: usize) {
    assert!(
        delta.d_in() == target.d_in && delta.d_out() == target.d_out,
        "LoRA delta [{} x {}] does not fit target {target}",
        delta.d_out(),
        delta.d_in()
    );
    assert!(
        delta.batch_size() == batch || delta.batch_size() == 1,
        "LoRA delta for {} has {} samples, the input has {batch}",
        target.path,
        delta.batch_size()
    );
}

/// A linear layer with a frozen base weight: for sample `n`,
/// `y_n = W x_n + b + scale · up_n (down_n x_n)`.
///
/// The base parameters are created frozen (no gradients); call `unfreeze()` to train the
/// base itself (the `editor` stage).
#[derive(Module, Debug)]
pub struct LoraLinear {
    /// `[d_out, d_in]` (PyTorch orientation).
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    #[module(skip)]
    pub target: LoraTarget,
}

impl LoraLinear {
    /// `x: [N, ..., d_in]` -> `[N, ..., d_out]`. With `None` this is exactly the base layer.
    ///
    /// A delta holds either `N` samples or one sample shared by the whole batch.
    pub fn forward<const D: usize>(&self, x: Tensor<D>, delta: Option<&LoraDelta>) -> Tensor<D> {
        let dims = x.dims();
        // The product on `[rows, d_in]`: given more dims, burn's `linear` may reshape the
        // weight to their rank, and a reshape copies a transposed view on the CPU backend
        // (every frozen weight, every call).
        let rows = dims[..D - 1].iter().product::<usize>();
        let out_dims = base_dims(dims, self.target.d_out);
        let flat = x.clone().reshape([rows, self.target.d_in]);
        let base = linear(flat, self.weight.val().transpose(), self.bias.as_ref().map(Param::val)).reshape(out_dims);
        let Some(delta) = delta else { return base };
        let batch = dims[0];
        assert_fits(&self.target, delta, batch);
        let tokens = dims[1..D - 1].iter().product::<usize>();
        let low_rank = delta.apply_tokens(x.reshape([batch, tokens, self.target.d_in]));
        base + low_rank.reshape(out_dims)
    }

    /// [`forward`](Self::forward) with this layer's delta looked up in `lora` by path.
    pub fn forward_lora<const D: usize>(&self, x: Tensor<D>, lora: Option<&LoraSet>) -> Tensor<D> {
        self.forward(x, lora.and_then(|set| set.get(&self.target.path)))
    }

    /// Static LoRA: `W + strength · ΔW` of sample `sample` folded into the weight;
    /// `strength = -1` unmerges.
    pub fn merge(self, delta: &LoraDelta, sample: usize, strength: f32) -> Self {
        assert_fits(&self.target, delta, delta.batch_size());
        let weight = add_to_weight(self.weight, sample_weight_delta(delta, sample, strength));
        Self { weight, ..self }
    }
}

fn base_dims<const D: usize>(mut dims: [usize; D], d_out: usize) -> [usize; D] {
    dims[D - 1] = d_out;
    dims
}

/// A 1x1 convolution with a frozen base weight: for sample `n` and every pixel,
/// `y_n = W x_n + b + scale · up_n (down_n x_n)`.
///
/// The base parameters are created frozen (no gradients); call `unfreeze()` to train them.
#[derive(Module, Debug)]
pub struct LoraConv1x1 {
    /// `[d_out, d_in, 1, 1]` (PyTorch and burn orientation).
    pub weight: Param<Tensor<4>>,
    pub bias: Option<Param<Tensor<1>>>,
    #[module(skip)]
    pub target: LoraTarget,
}

impl LoraConv1x1 {
    /// `x: [N, d_in, H, W]` -> `[N, d_out, H, W]`. With `None` this is exactly the base layer.
    pub fn forward(&self, x: Tensor<4>, delta: Option<&LoraDelta>) -> Tensor<4> {
        let options = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
        let base = conv2d(x.clone(), self.weight.val(), self.bias.as_ref().map(Param::val), options);
        let Some(delta) = delta else { return base };
        let [batch, d_in, h, w] = x.dims();
        assert_fits(&self.target, delta, batch);
        let low_rank = delta.apply_channels(x.reshape([batch, d_in, h * w]));
        base + low_rank.reshape([batch, self.target.d_out, h, w])
    }

    /// [`forward`](Self::forward) with this layer's delta looked up in `lora` by path.
    pub fn forward_lora(&self, x: Tensor<4>, lora: Option<&LoraSet>) -> Tensor<4> {
        self.forward(x, lora.and_then(|set| set.get(&self.target.path)))
    }

    /// Static LoRA: `W + strength · ΔW` of sample `sample` folded into the weight;
    /// `strength = -1` unmerges.
    pub fn merge(self, delta: &LoraDelta, sample: usize, strength: f32) -> Self {
        assert_fits(&self.target, delta, delta.batch_size());
        let weight = add_to_weight(self.weight, sample_weight_delta(delta, sample, strength));
        Self { weight, ..self }
    }
}
