//! The per-sample LoRA path against explicit per-sample weights, LoRA algebra, gradients and
//! merging.

mod common;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use common::*;
use loc_core::lora::*;

const SCALE: f32 = 0.7;

fn random_delta(n: usize, rank: usize, d_in: usize, d_out: usize, device: &Device) -> LoraDelta {
    LoraDelta::new(randn([n, rank, d_in], device), randn([n, d_out, rank], device), SCALE)
}

/// `W + scale · up_n · down_n` for sample `n`, `[d_out, d_in]`.
fn materialised(weight: Tensor<2>, delta: &LoraDelta, n: usize) -> Tensor<2> {
    let [_, d_out, d_in] = [delta.batch_size(), delta.d_out(), delta.d_in()];
    let up = delta.up.clone().narrow(0, n, 1).reshape([d_out, delta.rank()]);
    let down = delta.down.clone().narrow(0, n, 1).reshape([delta.rank(), d_in]);
    weight + up.matmul(down).mul_scalar(delta.scale)
}

fn linear_layer(d_in: usize, d_out: usize, device: &Device) -> LoraLinear {
    LoraLayerConfig::new(d_in, d_out).init_linear("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", device)
}

fn conv_layer(d_in: usize, d_out: usize, device: &Device) -> LoraConv1x1 {
    LoraLayerConfig::new(d_in, d_out).init_conv1x1("down_blocks.0.attentions.0.proj_in", device)
}

/// `x_n W_n^T + b` sample by sample, `x: [N, L, d_in]`.
fn explicit_linear(layer: &LoraLinear, x: Tensor<3>, delta: &LoraDelta) -> Tensor<3> {
    let n = x.dims()[0];
    let bias = layer.bias.as_ref().unwrap().val();
    let outs = (0..n)
        .map(|i| {
            let w = materialised(layer.weight.val(), delta, i);
            let xi: Tensor<2> = x.clone().narrow(0, i, 1).squeeze_dim(0);
            (xi.matmul(w.transpose()) + bias.clone().unsqueeze_dim(0)).unsqueeze_dim(0)
        })
        .collect();
    Tensor::cat(outs, 0)
}

#[test]
fn linear_per_sample_path_equals_materialised_weights() {
    let device = device();
    let layer = linear_layer(6, 5, &device);
    let delta = random_delta(3, 2, 6, 5, &device);
    let x = randn([3, 4, 6], &device);
    let dynamic = layer.forward(x.clone(), Some(&delta));
    assert_close(dynamic, explicit_linear(&layer, x, &delta), 1e-5);
}

#[test]
fn linear_accepts_any_number_of_token_dims() {
    let device = device();
    let layer = linear_layer(6, 5, &device);
    let delta = random_delta(2, 3, 6, 5, &device);
    let x = randn([2, 3, 2, 6], &device);
    let dynamic = layer.forward(x.clone(), Some(&delta));
    let flat = layer.forward(x.reshape([2, 6, 6]), Some(&delta));
    assert_eq!(dynamic.dims(), [2, 3, 2, 5]);
    assert_close(dynamic.reshape([2, 6, 5]), flat, 1e-6);
}

#[test]
fn conv1x1_per_sample_path_equals_materialised_weights() {
    let device = device();
    let layer = conv_layer(4, 6, &device);
    let delta = random_delta(3, 2, 4, 6, &device);
    let x = randn([3, 4, 5, 3], &device);
    let dynamic = layer.forward(x.clone(), Some(&delta));
    let bias = layer.bias.as_ref().unwrap().val();
    let explicit = (0..3)
        .map(|i| {
            let w = materialised(layer.weight.val().reshape([6, 4]), &delta, i).reshape([6, 4, 1, 1]);
            conv2d(x.clone().narrow(0, i, 1), w, Some(bias.clone()), ConvOptions::new([1, 1], [0, 0], [1, 1], 1))
        })
        .collect();
    assert_close(dynamic, Tensor::cat(explicit, 0), 1e-5);
}

#[test]
fn single_sample_delta_applies_to_the_whole_batch() {
    let device = device();
    let layer = linear_layer(6, 5, &device);
    let delta = random_delta(1, 2, 6, 5, &device);
    let x = randn([3, 4, 6], &device);
    let shared = layer.forward(x.clone(), Some(&delta));
    let tiled = layer.forward(x, Some(&delta.repeat(3)));
    assert_close(shared, tiled, 1e-6);
}

#[test]
fn negated_delta_gives_w_minus_delta_w_and_zero_delta_is_the_base_layer() {
    let device = device();
    let layer = linear_layer(6, 5, &device);
    let delta = random_delta(2, 2, 6, 5, &device);
    let x = randn([2, 3, 6], &device);

    // W - ΔW, materialised with the negated factors.
    let minus = LoraDelta::new(delta.down.clone(), delta.up.clone().neg(), delta.scale);
    let negated = layer.forward(x.clone(), Some(&delta.clone().negate()));
    assert_close(negated.clone(), explicit_linear(&layer, x.clone(), &minus), 1e-5);
    let plus = layer.forward(x.clone(), Some(&delta));
    let base = layer.forward(x.clone(), None);
    assert_close(plus + negated, base.clone().mul_scalar(2.0), 1e-5);

    let zero = LoraDelta::zeros(&layer.target, 2, 4, &device);
    assert_eq!(values(layer.forward(x.clone(), Some(&zero))), values(base.clone()));

    let conv = conv_layer(6, 5, &device);
    let image = randn([2, 6, 3, 3], &device);
    let zero = LoraDelta::zeros(&conv.target, 2, 4, &device);
    assert_eq!(values(conv.forward(image.clone(), Some(&zero))), values(conv.forward(image, None)));

    // Without a delta the layer is burn's Linear with the same (transposed) weights.
    let reference = Linear { weight: Param::from_tensor(layer.weight.val().transpose()), bias: layer.bias.clone() };
    assert_close(base, reference.forward(x), 1e-6);
}

#[test]
fn gradients_reach_the_factors_and_their_producer_but_not_the_frozen_base() {
    let device = device().autodiff();
    let layer = linear_layer(6, 5, &device);
    let conv = conv_layer(5, 3, &device);
    // A stand-in hypernetwork producing the factors of both targets for 2 samples.
    let producer = LinearConfig::new(4, 2 * (2 * 6 + 5 * 2 + 2 * 5 + 3 * 2)).init(&device);
    let code = randn([2, 4], &device);
    let flat = producer.forward(code);
    let take = |start: usize, len: usize| flat.clone().narrow(1, start, len);
    let linear_delta = LoraDelta::new(take(0, 12).reshape([2, 2, 6]), take(12, 10).reshape([2, 5, 2]), 1.0);
    let conv_delta = LoraDelta::new(take(22, 10).reshape([2, 2, 5]), take(32, 6).reshape([2, 3, 2]), 1.0);

    let x = randn([2, 4, 6], &device);
    let h = layer.forward(x, Some(&linear_delta.clone().negate())); // [2, 4, 5]
    let y = conv.forward(h.swap_dims(1, 2).reshape([2, 5, 2, 2]), Some(&conv_delta));
    let grads = y.powi_scalar(2).mean().backward();

    for frozen in [layer.weight.val().grad(&grads).is_none(), conv.weight.val().grad(&grads).is_none()] {
        assert!(frozen, "a frozen base weight received a gradient");
    }
    assert!(layer.bias.as_ref().unwrap().val().grad(&grads).is_none());
    let producer_grad = producer.weight.val().grad(&grads).expect("the producer gets a gradient");
    assert!(values(producer_grad.abs().sum()).iter().all(|&g| g > 0.0));
    assert!(linear_delta.up.grad(&grads).is_none(), "a non-leaf factor keeps no gradient of its own");

    // Leaf factors (deltas learnt directly) receive gradients too.
    let down = randn([2, 2, 6], &device).require_grad();
    let up = randn([2, 5, 2], &device).require_grad();
    let delta = LoraDelta::new(down.clone(), up.clone(), SCALE);
    let grads = layer.forward(randn([2, 3, 6], &device), Some(&delta)).sum().backward();
    assert!(down.grad(&grads).is_some() && up.grad(&grads).is_some());
    assert!(layer.weight.val().grad(&grads).is_none());
}

fn set_of(targets: &[LoraTarget], n: usize, rank: usize, device: &Device) -> LoraSet {
    targets.iter().map(|t| (t.path.clone(), random_delta(n, rank, t.d_in, t.d_out, device))).collect()
}

fn weight_deltas(set: &LoraSet) -> Vec<Vec<f32>> {
    set.iter().map(|(_, d)| values(d.weight_delta())).collect()
}

#[test]
fn norms_from_the_factors_equal_the_norms_of_the_materialised_updates() {
    let device = device();
    let delta = random_delta(3, 4, 6, 5, &device).scaled(-0.5);
    let expected: Vec<f32> = (0..3)
        .map(|i| values(delta.weight_delta().narrow(0, i, 1)).iter().map(|v| v * v).sum::<f32>().sqrt())
        .collect();
    let got = values(delta.frobenius_norms());
    for (g, e) in got.iter().zip(&expected) {
        assert!((g - e).abs() <= 1e-5 * e.max(1.0), "{got:?} vs {expected:?}");
    }
    let targets = [LoraTarget::linear("a", 6, 5), LoraTarget::linear("b", 3, 2)];
    let set = set_of(&targets, 2, 4, &device);
    let per_target: Vec<f32> = set.iter().map(|(_, d)| values(d.frobenius_norms().mean())[0]).collect();
    let mean = values(set.mean_norm().unwrap())[0];
    assert!((mean - (per_target[0] + per_target[1]) / 2.0).abs() < 1e-5);
    assert!(LoraSet::new().mean_norm().is_none());
}

#[test]
fn set_algebra_preserves_the_weight_updates() {
    let device = device();
    let targets = [LoraTarget::linear("a.to_q", 6, 5), LoraTarget::conv1x1("a.proj_in", 4, 3)];
    let set = set_of(&targets, 3, 2, &device);
    let other = set_of(&targets, 3, 4, &device);

    for ((_, d), (_, n)) in set.iter().zip(set.clone().negate().iter()) {
        assert_close(n.weight_delta(), d.weight_delta().neg(), 1e-6);
    }
    for ((_, d), (_, s)) in set.iter().zip(set.clone().scaled(0.25).iter()) {
        assert_close(s.weight_delta(), d.weight_delta().mul_scalar(0.25), 1e-6);
    }
    let weights = Tensor::<1>::from_floats([1.0, -1.0, 0.0], &device);
    for ((_, d), (_, w)) in set.iter().zip(set.clone().scaled_per_sample(weights).iter()) {
        let expected = Tensor::cat(
            vec![
                d.weight_delta().narrow(0, 0, 1),
                d.weight_delta().narrow(0, 1, 1).neg(),
                d.weight_delta().narrow(0, 2, 1).zeros_like(),
            ],
            0,
        );
        assert_close(w.weight_delta(), expected, 1e-6);
    }
    for ((_, d), (_, s)) in set.iter().zip(set.clone().select(&[2, 0, 2]).iter()) {
        let wd = d.weight_delta();
        let expected = Tensor::cat(vec![wd.clone().narrow(0, 2, 1), wd.clone().narrow(0, 0, 1), wd.narrow(0, 2, 1)], 0);
        assert_close(s.weight_delta(), expected, 1e-6);
    }
    for ((_, d), (_, r)) in set.iter().zip(set.clone().repeat(2).iter()) {
        assert_close(r.weight_delta(), Tensor::cat(vec![d.weight_delta(); 2], 0), 1e-6);
    }

    // Composition is exact and low-rank: rank 2 + 4, sum of the updates.
    let sum = set.clone().scaled(2.0) + other.clone().negate();
    for (((_, a), (_, b)), (_, s)) in set.iter().zip(other.iter()).zip(sum.iter()) {
        assert_eq!(s.rank(), 6);
        assert_close(s.weight_delta(), a.weight_delta().mul_scalar(2.0) - b.weight_delta(), 1e-5);
    }

    // Stacking sets of different ranks and scales along the batch keeps each sample's update.
    let stacked = LoraSet::cat(vec![set.clone(), other.clone().scaled(-0.5)]);
    assert_eq!(stacked.batch_size(), Some(6));
    for (((_, a), (_, b)), (_, s)) in set.iter().zip(other.iter()).zip(stacked.iter()) {
        assert_close(s.weight_delta(), Tensor::cat(vec![a.weight_delta(), b.weight_delta().mul_scalar(-0.5)], 0), 1e-5);
    }
    assert_eq!(weight_deltas(&set.clone().negate().negate()), weight_deltas(&set));
    set.check(&targets).unwrap();
    let err = set.check(&targets[..1]).unwrap_err().to_string();
    assert!(err.contains("a.proj_in"), "{err}");
}

/// A small tree with the naming of a diffusers transformer block, plus burn's own Linear.
#[derive(Module, Debug)]
struct Attention {
    to_q: LoraLinear,
    to_out: Vec<LoraLinear>,
}

#[derive(Module, Debug)]
struct Block {
    proj_in: LoraConv1x1,
    attn1: Attention,
    ff: Linear,
}

fn block(device: &Device) -> Block {
    let cfg = LoraLayerConfig::new(4, 4);
    Block {
        proj_in: cfg.init_conv1x1("proj_in", device),
        attn1: Attention {
            to_q: cfg.init_linear("attn1.to_q", device),
            to_out: vec![cfg.init_linear("attn1.to_out.0", device)],
        },
        ff: LinearConfig::new(4, 3).init(device),
    }
}

impl Block {
    fn forward(&self, x: Tensor<4>, lora: Option<&LoraSet>) -> Tensor<3> {
        let [n, c, h, w] = x.dims();
        let x = self.proj_in.forward_lora(x, lora).reshape([n, c, h * w]).swap_dims(1, 2);
        let x = self.attn1.to_q.forward_lora(x, lora);
        let x = self.attn1.to_out[0].forward_lora(x, lora);
        self.ff.forward(x)
    }
}

#[test]
fn merging_one_sample_equals_the_dynamic_path_and_unmerging_restores_the_weights() {
    let device = device();
    let model = block(&device);
    let mut targets =
        vec![model.proj_in.target.clone(), model.attn1.to_q.target.clone(), model.attn1.to_out[0].target.clone()];
    targets.push(LoraTarget::linear("ff", 4, 3));
    let set = set_of(&targets, 3, 2, &device);
    let x = randn([1, 4, 2, 3], &device);

    let merged = merge_lora(model.clone(), &set, 1, 1.0).unwrap();
    let dynamic = {
        let no_ff: LoraSet = set.iter().filter(|(p, _)| *p != "ff").map(|(p, d)| (p.to_string(), d.clone())).collect();
        let ff_delta = set.get("ff").unwrap().clone().select(&[1]);
        let ff_weight = ff_delta.weight_delta().reshape([3, 4]).transpose();
        let model = Block {
            ff: Linear { weight: Param::from_tensor(model.ff.weight.val() + ff_weight), bias: model.ff.bias.clone() },
            ..model.clone()
        };
        model.forward(x.clone(), Some(&no_ff.select(&[1])))
    };
    assert_close(merged.forward(x.clone(), None), dynamic, 1e-5);
    assert!(!merged.attn1.to_q.weight.is_require_grad(), "merging keeps the base frozen");

    let restored = unmerge_lora(merged, &set, 1, 1.0).unwrap();
    assert_close(restored.attn1.to_out[0].weight.val(), model.attn1.to_out[0].weight.val(), 1e-6);
    assert_close(restored.forward(x.clone(), None), model.forward(x, None), 1e-5);

    let stray: LoraSet = [("attn2.to_k".to_string(), random_delta(3, 2, 4, 4, &device))].into_iter().collect();
    let err = merge_lora(model.clone(), &stray, 0, 1.0).unwrap_err().to_string();
    assert!(err.contains("attn2.to_k"), "{err}");
    let wrong: LoraSet = [("attn1.to_q".to_string(), random_delta(3, 2, 4, 5, &device))].into_iter().collect();
    let err = merge_lora(model.clone(), &wrong, 0, 1.0).unwrap_err().to_string();
    assert!(err.contains("attn1.to_q.weight"), "{err}");
    assert!(merge_lora(model, &set, 3, 1.0).is_err());
}
