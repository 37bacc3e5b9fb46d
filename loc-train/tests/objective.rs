//! LoRA Reverse pinned down: the query is the width-flip of `A` and the target the width-flip
//! of `A'`; the reverse rows use exactly `-Δ`, conditioned on `B'` towards `B`; random
//! exchange swaps `A` and `A'` per sample at the configured rate; `reverse_weight = 0` leaves
//! the reverse term out; the loss is made of exactly those rows, each denoised towards its
//! target given its condition.

use std::path::Path;

use burn::module::{Initializer, Module};
use burn::nn::LinearConfig;
use burn::prelude::*;
use burn::tensor::Distribution;
use loc_core::clip::ClipVisionModelWithProjection;
use loc_core::hypernet::{DEFAULT_TARGET_SUFFIXES, HypernetShape, Hypernetwork, select_targets};
use loc_core::lora::LoraSet;
use loc_core::pipeline::InstructPix2Pix;
use loc_core::schedule::NoiseSchedule;
use loc_train::config::ObjectiveConfig;
use loc_train::models::tiny_vision_config;
use loc_train::objective::{
    Generator, SampleRngs, conditioned_loss, denoising_loss, exchange, lora_reverse_loss, reverse_rows, text_states,
};

/// `[N, C, H, W]` values, and the value at `(n, c, y, x)`.
struct Image {
    dims: [usize; 4],
    values: Vec<f32>,
}

impl Image {
    fn of(t: Tensor<4>) -> Self {
        Self { dims: t.dims(), values: t.into_data().try_into_vec::<f32>().unwrap() }
    }

    fn at(&self, n: usize, c: usize, y: usize, x: usize) -> f32 {
        let [_, cs, h, w] = self.dims;
        self.values[((n * cs + c) * h + y) * w + x]
    }

    /// Rows `rows` of `self` are the mirror images (last axis reversed) of rows `of_rows` of
    /// `source`, written out index by index.
    fn rows_mirror(&self, rows: std::ops::Range<usize>, source: &Image, of_rows: std::ops::Range<usize>) -> bool {
        let [_, cs, h, w] = source.dims;
        rows.zip(of_rows).all(|(n, m)| {
            (0..cs).all(|c| (0..h).all(|y| (0..w).all(|x| self.at(n, c, y, x) == source.at(m, c, y, w - 1 - x))))
        })
    }
}

/// The per-sample weight updates `[N, d_out, d_in]` of every target, flattened.
fn weight_deltas(lora: &LoraSet) -> Vec<Vec<f32>> {
    lora.paths().map(|p| lora.get(p).unwrap().weight_delta().into_data().try_into_vec::<f32>().unwrap()).collect()
}

/// The rows `rows` of every target's weight update.
fn rows_of(deltas: &[Vec<f32>], rows: std::ops::Range<usize>, batch: usize) -> Vec<Vec<f32>> {
    deltas
        .iter()
        .map(|d| {
            let per = d.len() / batch;
            d[rows.start * per..rows.end * per].to_vec()
        })
        .collect()
}

fn editor(device: &Device) -> InstructPix2Pix {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/tiny-editor");
    InstructPix2Pix::load(&dir, device).unwrap()
}

/// A tiny encoder and an `H` whose `up` heads are random, so that `Δ != 0` and its sign
/// matters (a fresh `H` emits `Δ = 0`).
fn generator_parts(editor: &InstructPix2Pix, device: &Device) -> (ClipVisionModelWithProjection, Hypernetwork) {
    device.seed(3);
    let encoder = ClipVisionModelWithProjection::new(&tiny_vision_config(16), device);
    let targets = select_targets(&editor.unet.lora_targets(), &DEFAULT_TARGET_SUFFIXES);
    let mut hypernet = HypernetShape { width: 32, heads: 4, depth: 1, patches: true, ..Default::default() }
        .config(64)
        .init(&targets, device);
    let rank = hypernet.rank();
    for head in &mut hypernet.heads {
        let init = Initializer::Normal { mean: 0.0, std: 0.05 };
        head.up = LinearConfig::new(32, head.d_out * rank).with_initializer(init).init(device);
    }
    (encoder, hypernet.no_grad())
}

fn pairs(n: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
    device.seed(7);
    let before = Tensor::random([n, 3, 16, 16], Distribution::Uniform(-1.0, 1.0), device);
    let after = Tensor::random([n, 3, 16, 16], Distribution::Uniform(-1.0, 1.0), device);
    (before, after)
}

#[test]
fn the_forward_rows_edit_the_mirrored_before_into_the_mirrored_after_with_plus_delta() {
    let device = Device::flex();
    let editor = editor(&device);
    let (encoder, hypernet) = generator_parts(&editor, &device);
    let generator = Generator { encoder: &encoder, hypernet: &hypernet, patches: true };
    // Not square, so that a flip of the height axis cannot pass for one of the width.
    let a = Tensor::random([3, 3, 4, 6], Distribution::Uniform(-1.0, 1.0), &device);
    let a_edited = Tensor::random([3, 3, 4, 6], Distribution::Uniform(-1.0, 1.0), &device);
    let (square_a, square_edited) = pairs(3, &device);
    let delta = generator.generate(square_a, square_edited);
    let rows = reverse_rows(a.clone(), a_edited.clone(), delta.clone(), false);
    let (a, a_edited) = (Image::of(a), Image::of(a_edited));
    assert_eq!(rows.conditions.dims()[0], 3, "forward only: one row per pair");
    assert!(Image::of(rows.conditions).rows_mirror(0..3, &a, 0..3), "the query is hflip(A)");
    assert!(Image::of(rows.targets).rows_mirror(0..3, &a_edited, 0..3), "the target is hflip(A')");
    assert_eq!(weight_deltas(&rows.lora), weight_deltas(&delta), "the forward rows use +Δ");
}

#[test]
fn the_reverse_rows_edit_the_mirrored_after_back_with_exactly_minus_delta() {
    let device = Device::flex();
    let editor = editor(&device);
    let (encoder, hypernet) = generator_parts(&editor, &device);
    let generator = Generator { encoder: &encoder, hypernet: &hypernet, patches: true };
    let n = 3;
    let (a, a_edited) = pairs(n, &device);
    let delta = generator.generate(a.clone(), a_edited.clone());
    let plus = weight_deltas(&delta);
    assert!(plus.iter().flatten().any(|v| v.abs() > 1e-4), "the test needs Δ != 0");
    let rows = reverse_rows(a.clone(), a_edited.clone(), delta, true);
    let (a, a_edited) = (Image::of(a), Image::of(a_edited));
    let (conditions, targets) = (Image::of(rows.conditions), Image::of(rows.targets));
    assert_eq!(conditions.dims[0], 2 * n);
    assert!(conditions.rows_mirror(0..n, &a, 0..n) && targets.rows_mirror(0..n, &a_edited, 0..n), "forward rows");
    assert!(conditions.rows_mirror(n..2 * n, &a_edited, 0..n), "the reverse rows are conditioned on B'");
    assert!(targets.rows_mirror(n..2 * n, &a, 0..n), "the reverse rows aim at B");
    let both = weight_deltas(&rows.lora);
    assert_eq!(rows_of(&both, 0..n, 2 * n), plus, "forward rows: +Δ");
    let minus: Vec<Vec<f32>> = plus.iter().map(|d| d.iter().map(|v| -v).collect()).collect();
    assert_eq!(rows_of(&both, n..2 * n, 2 * n), minus, "reverse rows: exactly -Δ of the same pair");
}

#[test]
fn random_exchange_swaps_each_pair_with_the_configured_probability() {
    let device = Device::flex();
    let n = 4000;
    // Pair i: A = i, A' = -i - 1 (every value tells which image of which pair it is).
    let ids: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let before = Tensor::<1>::from_floats(ids.as_slice(), &device).reshape([n, 1, 1, 1]);
    let after = before.clone().neg().sub_scalar(1.0);
    for prob in [0.0, 0.3, 1.0] {
        let (a, a_edited, swapped) = exchange(before.clone(), after.clone(), prob, &mut SampleRngs::new(5, 0, 0, n));
        let a: Vec<f32> = a.into_data().try_into_vec::<f32>().unwrap();
        let a_edited: Vec<f32> = a_edited.into_data().try_into_vec::<f32>().unwrap();
        for i in 0..n {
            let (x, y) = (i as f32, -(i as f32) - 1.0);
            let expected = if swapped[i] { (y, x) } else { (x, y) };
            assert_eq!((a[i], a_edited[i]), expected, "pair {i} at probability {prob}");
        }
        let rate = swapped.iter().filter(|&&s| s).count() as f64 / n as f64;
        // Four standard deviations of a binomial rate at this n.
        let tolerance = 4.0 * (prob * (1.0 - prob) / n as f64).sqrt();
        assert!((rate - prob).abs() <= tolerance, "swap rate {rate} at probability {prob}");
    }
    // One draw per sample, not one per batch: small batches mix swapped and kept pairs.
    let mixed = (0..50u64).filter(|&s| {
        let (_, _, swapped) = exchange(
            before.clone().narrow(0, 0, 8),
            after.clone().narrow(0, 0, 8),
            0.5,
            &mut SampleRngs::new(s, 0, 0, 8),
        );
        swapped.contains(&true) && swapped.contains(&false)
    });
    assert!(mixed.count() > 40);
}

/// `lora_reverse_loss` is exactly: exchange, `Δ = H(A, A')`, the rows of `reverse_rows`, the
/// conditioned denoising loss of each row, forward mean + weight x reverse mean.
#[test]
fn the_loss_is_built_from_exactly_those_rows_and_weights_the_reverse_term() {
    let device = Device::flex();
    let editor = editor(&device);
    let schedule = NoiseSchedule::new(&editor.scheduler);
    let (encoder, hypernet) = generator_parts(&editor, &device);
    let generator = Generator { encoder: &encoder, hypernet: &hypernet, patches: true };
    let prompt = text_states(&editor, &[String::new()], &device);
    let n = 4;
    let (before, after) = pairs(n, &device);
    for (reverse_weight, exchange_prob) in [(1.0, 0.5), (0.25, 0.0), (0.0, 0.5)] {
        let objective = ObjectiveConfig { reverse_weight, exchange_prob, ..ObjectiveConfig::default() };
        let loss = lora_reverse_loss(
            &editor,
            &generator,
            &schedule,
            before.clone(),
            after.clone(),
            prompt.clone(),
            &objective,
            &mut SampleRngs::new(1, 2, 0, n),
        );

        let mut rngs = SampleRngs::new(1, 2, 0, n);
        let (a, a_edited, _) = exchange(before.clone(), after.clone(), exchange_prob, &mut rngs);
        let delta = generator.generate(a.clone(), a_edited.clone());
        let rows = reverse_rows(a, a_edited, delta, reverse_weight > 0.0);
        let per_row: Vec<f32> = conditioned_loss(
            &editor,
            &schedule,
            rows.targets,
            rows.conditions,
            prompt.clone(),
            Some(&rows.lora),
            &mut rngs,
        )
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
        let mean = |r: &[f32]| r.iter().map(|&v| v as f64).sum::<f64>() / r.len() as f64;
        let forward = mean(&per_row[..n]);
        let names: Vec<&str> = loss.terms.iter().map(|(name, _)| *name).collect();
        let scalar = |t: &Tensor<1>| t.clone().into_scalar::<f32>() as f64;
        assert!((scalar(&loss.terms[0].1) - forward).abs() < 1e-6, "loss/forward at weight {reverse_weight}");
        if reverse_weight == 0.0 {
            assert_eq!(per_row.len(), n, "no reverse rows at weight 0");
            assert_eq!(names, ["loss/forward", "lora/norm"]);
            assert!((scalar(&loss.total) - forward).abs() < 1e-6);
        } else {
            let reverse = mean(&per_row[n..]);
            assert_eq!(names, ["loss/forward", "loss/reverse", "lora/norm"]);
            assert!((scalar(&loss.terms[1].1) - reverse).abs() < 1e-6);
            let expected = forward + reverse_weight as f64 * reverse;
            assert!((scalar(&loss.total) - expected).abs() < 1e-6, "total at weight {reverse_weight}");
        }
    }
}

/// The argument order of a conditioned loss: `target` is what G must produce, `condition` the
/// image G is conditioned on (swapping them would train the reverse edit).
#[test]
fn a_conditioned_loss_denoises_towards_the_target_given_the_condition() {
    let device = Device::flex();
    let editor = editor(&device);
    let schedule = NoiseSchedule::new(&editor.scheduler);
    let prompt = text_states(&editor, &[String::new()], &device);
    let shape = [2, 3, 16, 16];
    let target: Tensor<4> = SampleRngs::new(1, 0, 0, 2).normal(shape, &device);
    let condition: Tensor<4> = SampleRngs::new(2, 0, 0, 2).normal(shape, &device);
    let rngs = || SampleRngs::new(3, 0, 0, 2);
    let got =
        conditioned_loss(&editor, &schedule, target.clone(), condition.clone(), prompt.clone(), None, &mut rngs());
    // The same draws, in the same order: latent sampling noise, timesteps, noise.
    let mut draws = rngs();
    let _ = draws.normal::<4>(shape, &device);
    let timesteps = draws.timesteps(2, &schedule);
    let noise = draws.normal(shape, &device);
    let context = prompt.repeat_dim(0, 2);
    let expected = denoising_loss(&editor.unet, &schedule, target, condition, context, None, &timesteps, noise);
    let values = |t: Tensor<1>| t.into_data().try_into_vec::<f32>().unwrap();
    assert_eq!(values(got), values(expected));
}
