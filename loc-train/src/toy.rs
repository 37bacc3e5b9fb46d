//! LoRA Reverse on a toy linear world: the whole LoC recipe at the size of a unit test.
//!
//! An "image" is `M` pixel vectors in `R^d` (`[M, d]`); an edit `k` is a fixed linear map
//! `E_k = I + U_k V_k^T` applied to every pixel, so it commutes with the flip (reversing the
//! pixel order). The frozen editor `G` is a [`LoraLinear`] close to the identity (it "does
//! nothing" on its own), applied pixel by pixel. The hypernetwork `H` reads a pair `(A, A')`
//! through an image-level feature (the pixel cross-covariance `A^T A' / M`) and emits one
//! LoRA `Δ` for `G`. Training uses pairs only: `B = flip(A)`, `B' = flip(A')`; forward term
//! `G_{+Δ}(B) ≈ B'`, reverse term `G_{-Δ}(B') ≈ B`, random exchange of `A` and `A'`.
//! Evaluation transfers `Δ` to held-out query images (quads), against the do-nothing
//! baseline. With `M` larger than the rank, a LoRA cannot memorise the query's pixels: it
//! has to carry the edit.
//!
//! This stands in for the full trainer until the UNet editor and image hypernetwork land.

use std::path::Path;

use burn::module::{Initializer, Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::gelu;
use loc_core::lora::{ExportOptions, LoraDelta, LoraFormat, LoraLayerConfig, LoraLinear, LoraSet, save_lora};
use serde::Serialize;

use crate::config::ToyConfig;

/// The path of the editor's only LoRA target.
const EDITOR: &str = "editor";

fn normal<const D: usize>(shape: [usize; D], std: f64, device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, std), device)
}

/// The edits of the world and the frozen editor `G`.
pub struct World {
    /// `[K, d, d]`
    edits: Tensor<3>,
    pub editor: LoraLinear,
}

/// Before/after images (`[N, M, d]`) of one edit each, and a second pair with the same
/// edits (quads).
struct Quads {
    a: Tensor<3>,
    a_edited: Tensor<3>,
    b: Tensor<3>,
    b_edited: Tensor<3>,
}

impl World {
    pub fn new(config: &ToyConfig, device: &Device) -> Self {
        let (d, k) = (config.dim, config.edits);
        let eye = Tensor::<2>::eye(d, device);
        let std = (d as f64).powf(-0.25);
        let edits =
            eye.clone().unsqueeze_dim(0) + normal([k, d, 2], std, device).matmul(normal([k, 2, d], std, device));
        let mut editor = LoraLayerConfig::new(d, d).with_bias(false).init_linear(EDITOR, device);
        editor.weight = Param::from_tensor(eye + normal([d, d], 0.01, device)).set_require_grad(false);
        Self { edits, editor }
    }

    /// `n` quads of `pixels`-pixel images `a`, `b` and a random edit `k` per quad.
    fn quads(&self, n: usize, pixels: usize, device: &Device) -> Quads {
        let [k, d, _] = self.edits.dims();
        let ids = Tensor::<1>::random([n], Distribution::Uniform(0.0, k as f64), device).floor().int();
        let transposed = self.edits.clone().select(0, ids).swap_dims(1, 2);
        let apply = |x: &Tensor<3>| x.clone().matmul(transposed.clone());
        let (a, b) = (normal([n, pixels, d], 1.0, device), normal([n, pixels, d], 1.0, device));
        Quads { a_edited: apply(&a), b_edited: apply(&b), a, b }
    }
}

/// `H`: the pair's cross-covariance -> fusion `P` -> MLP -> heads `S` for the `down` and `up`
/// factors of the editor.
#[derive(Module, Debug)]
pub struct ToyHypernet {
    fusion: Linear,
    hidden: Linear,
    down_head: Linear,
    /// Zero-initialised: `Δ = 0` at step 0, so `G` starts exactly as it was.
    up_head: Linear,
    #[module(skip)]
    rank: usize,
    #[module(skip)]
    dim: usize,
}

impl ToyHypernet {
    pub fn new(config: &ToyConfig, device: &Device) -> Self {
        let (d, r, h) = (config.dim, config.rank, config.hidden);
        Self {
            fusion: LinearConfig::new(d * d, h).init(device),
            hidden: LinearConfig::new(h, h).init(device),
            down_head: LinearConfig::new(h, r * d).init(device),
            up_head: LinearConfig::new(h, d * r).with_initializer(Initializer::Zeros).init(device),
            rank: r,
            dim: d,
        }
    }

    /// One LoRA per pair: `[N, M, d]` twice -> a set with `N` samples for the editor.
    pub fn forward(&self, before: Tensor<3>, after: Tensor<3>) -> LoraSet {
        let [n, pixels, d] = before.dims();
        let cross = before.swap_dims(1, 2).matmul(after).div_scalar(pixels as f32).reshape([n, d * d]);
        let h = gelu(self.fusion.forward(cross));
        let h = gelu(self.hidden.forward(h));
        let down = self.down_head.forward(h.clone()).reshape([n, self.rank, self.dim]);
        let up = self.up_head.forward(h).reshape([n, self.dim, self.rank]);
        [(EDITOR.to_string(), LoraDelta::new(down, up, 1.0))].into_iter().collect()
    }
}

/// Mean squared error per sample, `[N, M, d]` -> `[N]`.
fn mse_rows(a: Tensor<3>, b: Tensor<3>) -> Tensor<1> {
    let n = a.dims()[0];
    (a - b).powi_scalar(2).reshape([n as i32, -1]).mean_dim(1).squeeze_dim(1)
}

/// One LoRA Reverse batch from pairs `(A, A')`; returns (forward loss, reverse loss).
fn lora_reverse_losses(
    world: &World,
    hyper: &ToyHypernet,
    config: &ToyConfig,
    device: &Device,
) -> (Tensor<1>, Tensor<1>) {
    let n = config.batch_size;
    let pairs = world.quads(n, config.pixels, device);
    // Random exchange: present (A', A) with probability p.
    let swap = Tensor::<3>::random([n, 1, 1], Distribution::Bernoulli(config.exchange_prob), device);
    let keep = swap.clone().neg().add_scalar(1.0);
    let before = pairs.a.clone() * keep.clone() + pairs.a_edited.clone() * swap.clone();
    let after = pairs.a_edited * keep + pairs.a * swap;
    let (query, target) = (before.clone().flip([1]), after.clone().flip([1]));
    let lora = hyper.forward(before, after);
    // Forward (+Δ: B -> B') and reverse (-Δ: B' -> B) terms as one batch of 2N.
    let both = LoraSet::cat(vec![lora.clone(), lora.negate()]);
    let out = world.editor.forward_lora(Tensor::cat(vec![query.clone(), target.clone()], 0), Some(&both));
    let err = mse_rows(out, Tensor::cat(vec![target, query], 0));
    (err.clone().narrow(0, 0, n).mean(), err.narrow(0, n, n).mean())
}

/// What the held-out quads show after training.
#[derive(Clone, Debug, Serialize)]
pub struct ToyReport {
    pub steps: usize,
    pub final_forward_loss: f32,
    pub final_reverse_loss: f32,
    /// `mse(G_{+Δ(A,A')}(B), B')` on held-out quads.
    pub transfer_mse: f32,
    /// `mse(G(B), B')`: what the editor does without a LoRA.
    pub no_lora_mse: f32,
    /// `mse(G_{-Δ(A,A')}(B'), B)`: the negated LoRA undoes the edit.
    pub reverse_transfer_mse: f32,
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_scalar::<f32>()
}

/// Trains `H` for `config.steps` steps, evaluates on held-out quads, and writes the LoRA of
/// the first held-out pair (kohya format) and `metrics.json` to `output_dir`.
pub fn run(config: &ToyConfig, seed: u64, output_dir: &Path, mut log: impl FnMut(&str)) -> anyhow::Result<ToyReport> {
    let device = Device::flex().autodiff();
    device.seed(seed);
    let world = World::new(config, &device);
    let mut hyper = ToyHypernet::new(config, &device);
    let mut optim = AdamWConfig::new().init();
    let (mut forward_loss, mut reverse_loss) = (f32::NAN, f32::NAN);

    for step in 1..=config.steps {
        let (forward, reverse) = lora_reverse_losses(&world, &hyper, config, &device);
        let loss = forward.clone() + reverse.clone().mul_scalar(config.reverse_weight);
        (forward_loss, reverse_loss) = (scalar(forward), scalar(reverse));
        let mut grads = loss.backward();
        let grads = GradientsParams::from_module(&mut grads, &hyper);
        hyper = optim.step(config.learning_rate, hyper, grads);
        if step % config.log_every == 0 || step == config.steps {
            log(&format!("step {step:>5}  forward {forward_loss:.5}  reverse {reverse_loss:.5}"));
        }
    }

    let hyper = hyper.valid();
    let eval_device = Device::flex();
    let editor = world.editor.valid();
    let quads = world.quads(config.eval_quads, config.pixels, &eval_device);
    let lora = hyper.forward(quads.a.clone(), quads.a_edited.clone());
    let report = ToyReport {
        steps: config.steps,
        final_forward_loss: forward_loss,
        final_reverse_loss: reverse_loss,
        transfer_mse: scalar(
            mse_rows(editor.forward_lora(quads.b.clone(), Some(&lora)), quads.b_edited.clone()).mean(),
        ),
        no_lora_mse: scalar(mse_rows(editor.forward(quads.b.clone(), None), quads.b_edited.clone()).mean()),
        reverse_transfer_mse: scalar(
            mse_rows(editor.forward_lora(quads.b_edited, Some(&lora.clone().negate())), quads.b).mean(),
        ),
    };

    std::fs::create_dir_all(output_dir)?;
    let lora_path = output_dir.join("toy_lora.safetensors");
    save_lora(&lora_path, &lora, std::slice::from_ref(&editor.target), 0, &ExportOptions::new(LoraFormat::Kohya))?;
    std::fs::write(output_dir.join("metrics.json"), serde_json::to_string_pretty(&report)?)?;
    log(&format!("wrote {} and metrics.json", lora_path.display()));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> ToyConfig {
        ToyConfig { steps: 150, eval_quads: 128, log_every: 1000, ..ToyConfig::default() }
    }

    #[test]
    fn the_generated_lora_is_exactly_zero_at_initialisation() {
        let config = small();
        let device = Device::flex();
        device.seed(3);
        let world = World::new(&config, &device);
        let hyper = ToyHypernet::new(&config, &device);
        let quads = world.quads(8, config.pixels, &device);
        let lora = hyper.forward(quads.a, quads.a_edited);
        let with = world.editor.forward_lora(quads.b.clone(), Some(&lora));
        let without = world.editor.forward(quads.b, None);
        assert_eq!(with.into_data(), without.into_data());
    }

    #[test]
    fn lora_reverse_learns_an_edit_that_transfers_to_held_out_queries() {
        let dir = tempfile::tempdir().unwrap();
        let report = run(&small(), 0, dir.path(), |_| {}).unwrap();
        assert!(
            report.transfer_mse < 0.5 * report.no_lora_mse,
            "held-out transfer {} vs no LoRA {}",
            report.transfer_mse,
            report.no_lora_mse
        );
        assert!(report.reverse_transfer_mse < 0.5 * report.no_lora_mse, "{report:?}");
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("metrics.json")).unwrap()).unwrap();
        assert_eq!(written["steps"], 150);
        assert!(dir.path().join("toy_lora.safetensors").exists());
    }
}
