//! The losses: the denoising loss of InstructPix2Pix (per sample), the editor's objective with
//! conditioning dropout, and LoRA Reverse for `H`.
//!
//! Every random draw (noise, timesteps, dropout, exchange, quads) comes from the stream of the
//! sample it concerns ([`SampleRngs`]), seeded from `(seed, step, the sample's index in the
//! step's batch)`. So a step is a pure function of the weights and the step number, which makes
//! `--resume` reproduce the uninterrupted run, and a sample draws the same numbers whichever
//! micro-batch or device carries it, which makes a run the same on any number of devices.
//!
//! Follows diffusers `examples/instruct_pix2pix/train_instruct_pix2pix.py` (the training step:
//! latents, noise, conditioning dropout) for the editor's loss.

use burn::prelude::*;
use loc_core::clip::ClipVisionModelWithProjection;
use loc_core::hypernet::{Hypernetwork, pair_features};
use loc_core::lora::LoraSet;
use loc_core::pipeline::{InstructPix2Pix, condition_latents, latent_shape, target_latents};
use loc_core::schedule::NoiseSchedule;
use loc_core::unet::UNet2DConditionModel;
use loc_core::vae::LatentDistribution;
use loc_data::rng::step_rng;
use rand::RngExt;
use rand::rngs::StdRng;

use crate::cache::EncodedBatch;
use crate::config::ObjectiveConfig;

/// Standard normal values (Box-Muller) as a tensor of `shape`.
pub fn normal<const D: usize>(rng: &mut StdRng, shape: [usize; D], device: &Device) -> Tensor<D> {
    let values = normal_values(rng, shape.iter().product());
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn normal_values(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

/// The random streams of a step's samples, one per sample, seeded from `(seed, step, the
/// sample's index in the step's whole batch)`. A batch of `rows` (a multiple of the samples:
/// LoRA Reverse's `2N`) takes row `j` from sample `j % N`'s stream, so a sample's draws do not
/// depend on which other samples share its micro-batch or device.
pub struct SampleRngs(Vec<StdRng>);

impl SampleRngs {
    /// The streams of samples `first..first + n` of step `step`.
    pub fn new(seed: u64, step: u64, first: u64, n: usize) -> Self {
        Self((first..first + n as u64).map(|i| step_rng(seed, step, i)).collect())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sample `i`'s own stream (its quad draws).
    pub fn sample(&mut self, i: usize) -> &mut StdRng {
        &mut self.0[i]
    }

    /// One uniform draw in `[0, 1)` per sample.
    pub fn uniform(&mut self) -> Vec<f64> {
        self.0.iter_mut().map(|rng| rng.random()).collect()
    }

    /// Standard normal rows of `shape`, row `j` from sample `j % N`.
    pub fn normal<const D: usize>(&mut self, shape: [usize; D], device: &Device) -> Tensor<D> {
        let per_row = shape[1..].iter().product();
        let values: Vec<f32> = self.rows(shape[0]).flat_map(|i| normal_values(&mut self.0[i], per_row)).collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    /// A timestep drawn uniformly from the schedule for each of `rows` rows, row `j` from
    /// sample `j % N`.
    pub fn timesteps(&mut self, rows: usize, schedule: &NoiseSchedule) -> Vec<usize> {
        self.rows(rows).map(|i| self.0[i].random_range(0..schedule.num_train_timesteps())).collect()
    }

    /// Which sample's stream each of `rows` rows draws from.
    fn rows(&self, rows: usize) -> impl Iterator<Item = usize> + use<> {
        let n = self.0.len();
        assert!(n > 0 && rows.is_multiple_of(n), "{rows} rows for {n} samples' streams");
        (0..rows).map(move |j| j % n)
    }
}

/// Per-sample `[N]` mean squared error of the UNet's output against the target of the
/// schedule's prediction type, for clean latents `x0` noised with `noise` at `timesteps`.
#[allow(clippy::too_many_arguments)]
pub fn denoising_loss(
    unet: &UNet2DConditionModel,
    schedule: &NoiseSchedule,
    x0: Tensor<4>,
    condition: Tensor<4>,
    context: Tensor<3>,
    lora: Option<&LoraSet>,
    timesteps: &[usize],
    noise: Tensor<4>,
) -> Tensor<1> {
    let device = x0.device();
    let n = timesteps.len();
    let noisy = schedule.add_noise(x0.clone(), noise.clone(), timesteps);
    let t: Vec<f32> = timesteps.iter().map(|&t| t as f32).collect();
    let t = Tensor::<1>::from_data(TensorData::new(t, [n]), &device);
    let out = unet.forward(Tensor::cat(vec![noisy, condition], 1), t, context, lora);
    let target = schedule.target(x0, noise, timesteps);
    (out - target).powi_scalar(2).reshape([n as i32, -1]).mean_dim(1).reshape([n])
}

/// `[N, L, D]` text states of `prompts`.
pub fn text_states(editor: &InstructPix2Pix, prompts: &[String], device: &Device) -> Tensor<3> {
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    editor.encode_prompts(&refs, device)
}

/// A scalar loss, and the named terms it is made of (for logging).
pub struct Loss {
    pub total: Tensor<1>,
    pub terms: Vec<(&'static str, Tensor<1>)>,
}

/// The InstructPix2Pix objective on pairs `A -> A'` with their instructions: one uniform draw
/// `r` per sample drops the text (`r < 2p`) or the condition image (`p <= r < 3p`).
pub fn editor_loss(
    editor: &InstructPix2Pix,
    schedule: &NoiseSchedule,
    before: Tensor<4>,
    after: Tensor<4>,
    instructions: &[String],
    dropout: f64,
    rngs: &mut SampleRngs,
) -> Loss {
    let device = before.device();
    let n = instructions.len();
    let draws = rngs.uniform();
    let prompts: Vec<String> = instructions
        .iter()
        .zip(&draws)
        .map(|(text, &r)| if r < 2.0 * dropout { String::new() } else { text.clone() })
        .collect();
    let keep: Vec<f32> = draws.iter().map(|&r| if (dropout..3.0 * dropout).contains(&r) { 0.0 } else { 1.0 }).collect();
    let keep = Tensor::<1>::from_data(TensorData::new(keep, [n]), &device).reshape([n, 1, 1, 1]);
    let vae = editor.vae.as_ref();
    let shape = latent_shape(vae, after.dims());
    let x0 = target_latents(vae, after, rngs.normal(shape, &device));
    let condition = condition_latents(vae, before) * keep;
    let timesteps = rngs.timesteps(n, schedule);
    let noise = rngs.normal(shape, &device);
    let context = text_states(editor, &prompts, &device);
    let total = denoising_loss(&editor.unet, schedule, x0, condition, context, None, &timesteps, noise).mean();
    Loss { terms: vec![("loss/denoise", total.clone())], total }
}

/// Per-sample denoising loss of G (with `lora`) editing `condition` images into `target`
/// images, one prompt (`[1, L, D]` states) for all; noise and timesteps from `rngs`.
pub fn conditioned_loss(
    editor: &InstructPix2Pix,
    schedule: &NoiseSchedule,
    target: Tensor<4>,
    condition: Tensor<4>,
    prompt: Tensor<3>,
    lora: Option<&LoraSet>,
    rngs: &mut SampleRngs,
) -> Tensor<1> {
    let vae = editor.vae.as_ref();
    let target = match vae {
        Some(vae) => {
            let distribution = vae.encode(target);
            Latents { mean: distribution.mean, logvar: Some(distribution.logvar) }
        }
        None => Latents { mean: target, logvar: None },
    };
    let condition = condition_latents(vae, condition);
    latent_loss(editor, schedule, target, condition, prompt, lora, rngs)
}

/// What the frozen VAE makes of target images: its latent distribution, or (pixel space, no
/// `logvar`) the pixels.
pub struct Latents {
    pub mean: Tensor<4>,
    pub logvar: Option<Tensor<4>>,
}

impl Latents {
    /// Rows of `parts` one after the other.
    pub fn cat(parts: Vec<Latents>) -> Latents {
        let (means, logvars): (Vec<_>, Vec<_>) = parts.into_iter().map(|l| (l.mean, l.logvar)).unzip();
        let logvars: Option<Vec<_>> = logvars.into_iter().collect();
        Latents { mean: Tensor::cat(means, 0), logvar: logvars.map(|l| Tensor::cat(l, 0)) }
    }
}

/// [`conditioned_loss`] from encodings: the target's [`Latents`] and the condition latents
/// (the cached path draws exactly what the image path draws).
pub fn latent_loss(
    editor: &InstructPix2Pix,
    schedule: &NoiseSchedule,
    target: Latents,
    condition: Tensor<4>,
    prompt: Tensor<3>,
    lora: Option<&LoraSet>,
    rngs: &mut SampleRngs,
) -> Tensor<1> {
    let device = condition.device();
    let shape = condition.dims();
    let rows = shape[0];
    let sample_noise = rngs.normal(shape, &device);
    let x0 = match (target.logvar, editor.vae.as_ref()) {
        (Some(logvar), Some(vae)) => LatentDistribution { mean: target.mean, logvar }
            .sample(sample_noise)
            .mul_scalar(vae.scaling_factor() as f32),
        (None, None) => target.mean,
        _ => panic!("target latents that do not match the editor's VAE"),
    };
    let timesteps = rngs.timesteps(rows, schedule);
    let noise = rngs.normal(shape, &device);
    let context = prompt.repeat_dim(0, rows);
    denoising_loss(&editor.unet, schedule, x0, condition, context, lora, &timesteps, noise)
}

/// `H` and its image encoder.
pub struct Generator<'a> {
    pub encoder: &'a ClipVisionModelWithProjection,
    pub hypernet: &'a Hypernetwork,
    pub patches: bool,
}

impl Generator<'_> {
    /// `Δ = H(A, A')`.
    pub fn generate(&self, before: Tensor<4>, after: Tensor<4>) -> LoraSet {
        self.hypernet.forward(pair_features(self.encoder, before, after, self.patches))
    }
}

/// Random exchange: each pair is shown as `(A', A)` with probability `prob` (one draw per
/// sample), as `(A, A')` otherwise. Returns the pairs as `H` sees them and which were swapped.
pub fn exchange(
    before: Tensor<4>,
    after: Tensor<4>,
    prob: f64,
    rngs: &mut SampleRngs,
) -> (Tensor<4>, Tensor<4>, Vec<bool>) {
    let device = before.device();
    let n = before.dims()[0];
    let swapped = exchange_draws(prob, rngs);
    let swap: Vec<f32> = swapped.iter().map(|&s| if s { 1.0 } else { 0.0 }).collect();
    let swap = Tensor::<1>::from_data(TensorData::new(swap, [n]), &device).reshape([n, 1, 1, 1]);
    let keep = swap.clone().neg().add_scalar(1.0);
    let a = before.clone() * keep.clone() + after.clone() * swap.clone();
    let a_edited = after * keep + before * swap;
    (a, a_edited, swapped)
}

/// Which pairs random exchange shows the other way round (one draw per pair).
pub fn exchange_draws(prob: f64, rngs: &mut SampleRngs) -> Vec<bool> {
    rngs.uniform().into_iter().map(|r| r < prob).collect()
}

/// What LoRA Reverse asks of G, one row per denoising sample: the condition image, the
/// target image and the row's LoRA.
pub struct ReverseRows {
    pub conditions: Tensor<4>,
    pub targets: Tensor<4>,
    pub lora: LoraSet,
}

/// The rows of LoRA Reverse for pairs `(A, A')` and their `Δ`: with `B = hflip(A)` and
/// `B' = hflip(A')` (the width axis), the forward rows `(B -> B', +Δ)` and, when `reverse`,
/// the reverse rows `(B' -> B, -Δ)` after them.
pub fn reverse_rows(a: Tensor<4>, a_edited: Tensor<4>, delta: LoraSet, reverse: bool) -> ReverseRows {
    let (b, b_edited) = (a.flip([3]), a_edited.flip([3]));
    if !reverse {
        return ReverseRows { conditions: b, targets: b_edited, lora: delta };
    }
    ReverseRows {
        conditions: Tensor::cat(vec![b.clone(), b_edited.clone()], 0),
        targets: Tensor::cat(vec![b_edited, b], 0),
        lora: reversed(delta),
    }
}

/// LoRA Reverse on pairs: [`exchange`], `Δ = H(A, A')`, then the forward term `G(+Δ, B) -> B'`
/// and the reverse term `G(-Δ, B') -> B` ([`reverse_rows`]) in one batch of `2N`, the reverse
/// term weighted by `reverse_weight` (0: left out). `prompt` holds the text states (`[1, L, D]`).
#[allow(clippy::too_many_arguments)]
pub fn lora_reverse_loss(
    editor: &InstructPix2Pix,
    generator: &Generator,
    schedule: &NoiseSchedule,
    before: Tensor<4>,
    after: Tensor<4>,
    prompt: Tensor<3>,
    objective: &ObjectiveConfig,
    rngs: &mut SampleRngs,
) -> Loss {
    let n = before.dims()[0];
    let (a, a_edited, _) = exchange(before, after, objective.exchange_prob, rngs);
    let delta = generator.generate(a.clone(), a_edited.clone());
    let norm = delta.mean_norm();
    let rows = reverse_rows(a, a_edited, delta, objective.reverse_weight > 0.0);
    let losses = conditioned_loss(editor, schedule, rows.targets, rows.conditions, prompt, Some(&rows.lora), rngs);
    reverse_terms(losses, n, norm, objective)
}

/// [`lora_reverse_loss`] from cached encodings (`[data] cache`): the same draws, the same
/// rows, no image through the frozen encoders.
pub fn lora_reverse_loss_encoded(
    editor: &InstructPix2Pix,
    generator: &Generator,
    schedule: &NoiseSchedule,
    batch: &EncodedBatch,
    prompt: Tensor<3>,
    objective: &ObjectiveConfig,
    rngs: &mut SampleRngs,
) -> Loss {
    let n = batch.len();
    let swapped = exchange_draws(objective.exchange_prob, rngs);
    let [a, a_edited, b, b_edited] = batch.roles(&swapped);
    let delta = generator.hypernet.forward(a.pair_features(&a_edited));
    let norm = delta.mean_norm();
    let (targets, conditions, lora) = if objective.reverse_weight > 0.0 {
        let targets = Latents::cat(vec![b_edited.latents, b.latents]);
        (targets, Tensor::cat(vec![b.mode, b_edited.mode], 0), reversed(delta))
    } else {
        (b_edited.latents, b.mode, delta)
    };
    let losses = latent_loss(editor, schedule, targets, conditions, prompt, Some(&lora), rngs);
    reverse_terms(losses, n, norm, objective)
}

/// `+Δ` rows then `-Δ` rows.
fn reversed(delta: LoraSet) -> LoraSet {
    LoraSet::cat(vec![delta.clone(), delta.negate()])
}

/// The LoRA Reverse loss from the per-row losses of `n` pairs (forward rows, then reverse
/// rows when the term is on) and the LoRA's mean norm.
pub fn reverse_terms(losses: Tensor<1>, n: usize, norm: Option<Tensor<1>>, objective: &ObjectiveConfig) -> Loss {
    let reverse = objective.reverse_weight > 0.0;
    let forward = losses.clone().narrow(0, 0, n).mean();
    let mut terms = vec![("loss/forward", forward.clone())];
    let mut total = forward;
    if reverse {
        let backward = losses.narrow(0, n, n).mean();
        total = total + backward.clone().mul_scalar(objective.reverse_weight);
        terms.push(("loss/reverse", backward));
    }
    // Logged, not optimised: a LoRA that grows without bound shows here first.
    terms.extend(norm.map(|norm| ("lora/norm", norm.detach())));
    Loss { terms, total }
}

/// The quad term: `G(+Δ, B) -> B'` with `Δ = H(A, A')`, for data that has quads.
#[allow(clippy::too_many_arguments)]
pub fn quad_loss(
    editor: &InstructPix2Pix,
    generator: &Generator,
    schedule: &NoiseSchedule,
    [a, a_edited, b, b_edited]: [Tensor<4>; 4],
    prompt: Tensor<3>,
    rngs: &mut SampleRngs,
) -> Tensor<1> {
    let lora = generator.generate(a, a_edited);
    conditioned_loss(editor, schedule, b_edited, b, prompt, Some(&lora), rngs).mean()
}

/// A batch of chained world items (a scene edit `e1`, then a pixel edit `e2`), as `[N, 3, r, r]`
/// tensors: `A`, `e1(A)`, `e2(A)`, another scene `B`, and `e2(e1(B))`.
pub struct ChainedBatch {
    pub a: Tensor<4>,
    pub a_first: Tensor<4>,
    pub a_second: Tensor<4>,
    pub b: Tensor<4>,
    pub b_both: Tensor<4>,
}

/// The composition term: `G(Δ1 + Δ2, B) -> e2(e1(B))` with `Δ1 = H(A, e1(A))` and `Δ2 = H(A,
/// e2(A))`, so that the sum of two visual instructions' LoRAs makes both edits. `H` sees the two
/// pairs in one batch.
pub fn compose_loss(
    editor: &InstructPix2Pix,
    generator: &Generator,
    schedule: &NoiseSchedule,
    batch: ChainedBatch,
    prompt: Tensor<3>,
    rngs: &mut SampleRngs,
) -> Tensor<1> {
    let n = batch.a.dims()[0];
    let deltas = generator
        .generate(Tensor::cat(vec![batch.a.clone(), batch.a], 0), Tensor::cat(vec![batch.a_first, batch.a_second], 0));
    let (first, second): (Vec<usize>, Vec<usize>) = ((0..n).collect(), (n..2 * n).collect());
    let lora = deltas.clone().select(&first) + deltas.select(&second);
    conditioned_loss(editor, schedule, batch.b_both, batch.b, prompt, Some(&lora), rngs).mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use loc_data::rng::step_rng;

    #[test]
    fn a_samples_draws_do_not_depend_on_its_neighbours() {
        let device = Device::flex();
        let schedule = NoiseSchedule::new(&loc_core::schedule::SchedulerConfig::sd15());
        // Samples 0..4 of a step in one batch, and the same four split 2 + 2 (two devices or
        // two micro-batches): LoRA Reverse's 2N rows, the timesteps and the uniform draws agree.
        let draw = |first: u64, n: usize| {
            let mut rngs = SampleRngs::new(9, 4, first, n);
            let u = rngs.uniform();
            let rows: Tensor<2> = rngs.normal([2 * n, 3], &device);
            let t = rngs.timesteps(2 * n, &schedule);
            (u, rows.into_data().try_into_vec::<f32>().unwrap(), t)
        };
        let (u, rows, t) = draw(0, 4);
        let ((u1, rows1, t1), (u2, rows2, t2)) = (draw(0, 2), draw(2, 2));
        assert_eq!(u, [u1, u2].concat());
        // Row j of the 2N rows is sample j % N's: the forward rows, then the reverse rows.
        assert_eq!(rows, [&rows1[..6], &rows2[..6], &rows1[6..], &rows2[6..]].concat());
        assert_eq!(t, [&t1[..2], &t2[..2], &t1[2..], &t2[2..]].concat());
        assert_ne!(u, SampleRngs::new(9, 5, 0, 4).uniform(), "another step draws anew");
    }

    #[test]
    fn draws_depend_only_on_seed_step_and_stream() {
        let device = Device::flex();
        let a: Tensor<2> = normal(&mut step_rng(3, 7, 0), [4, 500], &device);
        let b: Tensor<2> = normal(&mut step_rng(3, 7, 0), [4, 500], &device);
        let c: Tensor<2> = normal(&mut step_rng(3, 8, 0), [4, 500], &device);
        assert_eq!(a.to_data(), b.to_data());
        assert_ne!(a.to_data(), c.to_data());
        let mean = a.clone().mean().into_scalar::<f32>();
        let var = a.powi_scalar(2).mean().into_scalar::<f32>();
        assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.1, "mean {mean}, var {var}");
    }
}
