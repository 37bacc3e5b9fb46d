//! Training, one loop for both stages: [`run`] builds the stage's [`Trainee`] ([`editor`] or
//! [`hypernet`]) and hands it to the loop ([`train_loop`]): micro-batches with gradient
//! accumulation, global gradient-norm clipping, AdamW, the probe, sample grids,
//! checkpoints, resume, a guard against non-finite losses and a clean stop on Ctrl-C. The
//! end-of-run quad evaluation follows.
//!
//! [`run_on`] trains data-parallel on several devices: one replica per device, each on its
//! share of every batch, their gradients averaged ([`crate::sync`]). The first device's
//! replica alone logs, probes, saves and evaluates, and every random draw belongs to a sample
//! ([`SampleRngs`]), so a run gives the same weights on any number of devices (up to the order
//! of float sums) and resumes on any number.

mod editor;
mod hypernet;
mod train_loop;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::module::Module;
use burn::prelude::*;
use image::RgbImage;
use loc_core::pipeline::{EditOptions, InstructPix2Pix};
use loc_data::config::OpenedSet;
use loc_data::loader::PairBatch;
use loc_data::pipeline::{PreparedPair, PreparedQuad, Preprocess, tensor_image};
use loc_data::rng::step_rng;
use loc_eval::metrics::embedding::MetricModels;
use loc_eval::quads::{LoraGenerator, QuadEval, QuadReport};

use crate::cache::{CachedItem, EncodedBatch};
use crate::config::{Config, EvalConfig, Stage};
use crate::objective::{Loss, SampleRngs};
use crate::probe::{Probe, ProbeResult};

/// How a run is started.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// `latest` or a checkpoint folder.
    pub resume: Option<String>,
    /// Print progress and lines (off in tests).
    pub echo: bool,
    /// Stop (with a checkpoint) after this many steps of this invocation, as Ctrl-C would.
    pub stop_after: Option<u64>,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunSummary {
    /// `(step, loss)` of every step this invocation ran.
    pub losses: Vec<(u64, f64)>,
    pub probes: Vec<(u64, ProbeResult)>,
    /// The quad probe's results (`[probe] quads`).
    pub quad_probes: Vec<(u64, ProbeResult)>,
    /// Steps done (all invocations).
    pub steps_done: u64,
    pub bad_steps: u64,
    /// The final model (`OUTPUT/editor` or `OUTPUT/loc`); `None` when stopped early.
    pub exported: Option<PathBuf>,
    pub report: Option<QuadReport>,
}

/// Runs `config` on `device` (without autodiff; the run adds it): builds the models, trains,
/// exports and evaluates.
pub fn run(config: &Config, options: &RunOptions, device: &Device) -> anyhow::Result<RunSummary> {
    run_on(config, options, std::slice::from_ref(device))
}

/// [`run`] data-parallel on `devices` (the first is the main one), `train.batch_size` split
/// evenly between them.
pub fn run_on(config: &Config, options: &RunOptions, devices: &[Device]) -> anyhow::Result<RunSummary> {
    let n = devices.len();
    if n == 0 || !config.train.batch_size.is_multiple_of(n) {
        bail!("{n} devices cannot share train.batch_size = {} evenly", config.train.batch_size);
    }
    let devices: Vec<Device> = devices
        .iter()
        .map(|device| {
            let device = device.clone().autodiff();
            let device = if config.train.gradient_checkpointing { device.gradient_checkpointing() } else { device };
            config.train.precision.check(&device)?;
            device.seed(config.seed);
            Ok(device)
        })
        .collect::<anyhow::Result<_>>()?;
    std::fs::create_dir_all(&config.output_dir).with_context(|| format!("creating {}", config.output_dir.display()))?;
    let sets = config.data.open(config.seed, options.echo)?;
    match config.stage {
        Stage::Editor => {
            let trainee = editor::EditorTrainee::build(config, &sets, &devices[0])?;
            train_loop::train(trainee, config, &sets, options, &devices, None)
        }
        Stage::Hypernet => {
            let (trainee, cache) = hypernet::HypernetTrainee::build(config, &sets, options.echo, &devices[0])?;
            train_loop::train(trainee, config, &sets, options, &devices, cache)
        }
    }
}

/// What differs between the stages.
trait Trainee: Send {
    /// What trains (gradients, optimiser state).
    type Weights: Module;
    /// The export's folder name under the output and in each checkpoint.
    const EXPORT: &'static str;
    fn weights(&self) -> Self::Weights;
    fn set_weights(&mut self, weights: Self::Weights);
    /// A copy on another device for data-parallel training: the same weights (and parameter
    /// ids), with the frozen models forked there in their precision.
    fn replica(&self, device: &Device) -> Self;
    /// The loss of `batch`, each sample drawing from its own stream of `rngs`.
    fn loss(&self, batch: &Batch, config: &Config, rngs: &mut SampleRngs) -> Loss;
    /// The frozen editor (the stage's models without autodiff are built from it).
    fn editor(&self) -> &InstructPix2Pix;
    fn probe(&self, probe: &Probe, config: &Config) -> ProbeResult;
    /// The sample grid's columns for the probe's first `count` pairs.
    fn grid(&self, probe: &Probe, count: usize, options: &EditOptions, config: &Config) -> Vec<Tensor<4>>;
    /// Writes the trained weights as a loadable model into `dir`, after `step` steps.
    fn export(&self, dir: &Path, step: u64) -> anyhow::Result<()>;
    /// Loads the weights an [`export`](Self::export) wrote.
    fn restore(&mut self, dir: &Path, config: &Config) -> anyhow::Result<()>;
    fn evaluate(&self, quads: &[PreparedQuad], eval: &Evaluation, config: &Config) -> (QuadReport, RgbImage);
}

/// A training batch: decoded images, or their cached encodings (`[data] cache`). One per step:
/// the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Batch {
    Images(PairBatch),
    Encoded(EncodedBatch),
}

/// One item of a batch as the loader prepares it.
enum Prepared {
    Pair(PreparedPair),
    Cached(CachedItem),
}

impl Batch {
    /// Items of one kind (a run either caches or decodes) as tensors on `device`.
    fn new(items: Vec<Prepared>, device: &Device) -> Self {
        let (mut pairs, mut cached) = (Vec::new(), Vec::new());
        for item in items {
            match item {
                Prepared::Pair(pair) => pairs.push(pair),
                Prepared::Cached(encoded) => cached.push(encoded),
            }
        }
        if cached.is_empty() {
            Batch::Images(PairBatch::from_pairs(&pairs, device))
        } else {
            Batch::Encoded(EncodedBatch::new(&cached, device))
        }
    }
}

/// The `[eval]` section with the metric models it names.
struct Evaluation<'a> {
    config: &'a EvalConfig,
    models: MetricModels,
}

impl Evaluation<'_> {
    /// The end-of-run quad evaluation of `editor` with `generator`'s LoRA (if any, as `LoC`)
    /// and `prompt`.
    fn run(
        &self,
        editor: &InstructPix2Pix,
        generator: Option<LoraGenerator>,
        prompt: &str,
        quads: &[PreparedQuad],
        config: &Config,
        device: &Device,
    ) -> (QuadReport, RgbImage) {
        let options = EditOptions::new(self.config.sampling.clone(), config.seed);
        let (sheet, models) = (self.config.sheet, &self.models);
        let generators = generator.map(|g| ("LoC".to_string(), g)).into_iter().collect();
        QuadEval { editor, generators, options, prompt, sheet, models, device }.evaluate(quads)
    }
}

/// A grid's rows: for each of the columns' items, its image in every column.
fn grid_rows(columns: &[Tensor<4>]) -> Vec<Vec<RgbImage>> {
    let n = columns.first().map_or(0, |c| c.dims()[0]);
    (0..n).map(|i| columns.iter().map(|t| tensor_image(t.clone().narrow(0, i, 1))).collect()).collect()
}

/// The first `count` validation pairs across the data sets, prepared without randomness: the
/// probe's pairs.
pub fn validation_pairs(config: &Config, sets: &[OpenedSet], count: usize) -> anyhow::Result<Vec<PreparedPair>> {
    let preprocess = Preprocess::new(config.data.resolution);
    let mut rng = step_rng(config.seed, u64::MAX, 2);
    let mut pairs = Vec::new();
    for set in sets {
        for &i in &set.validation {
            if pairs.len() == count {
                return Ok(pairs);
            }
            if let Ok(pair) =
                set.dataset.get(i).map_err(|_| ()).and_then(|r| preprocess.pair(&r, &mut rng).map_err(|_| ()))
            {
                pairs.push(pair);
            }
        }
    }
    if pairs.is_empty() {
        bail!("the probe needs validation pairs: set data.validation_fraction above 0 (no set has a usable one)");
    }
    Ok(pairs)
}

/// The quad probe on the first `probe.quads` quads of `[eval] quads`, if asked for.
pub fn quad_probe(config: &Config, editor: &InstructPix2Pix, device: &Device) -> anyhow::Result<Option<Probe>> {
    let (Some(eval), count @ 1..) = (&config.eval, config.probe.quads) else { return Ok(None) };
    let (quads, _) = loc_eval::quads::prepare_quads(&eval.quads, count, config.seed, config.data.resolution)?;
    if quads.is_empty() {
        bail!("probe.quads: no readable quad among the first {count} of [eval] quads");
    }
    let rng = step_rng(config.seed, u64::MAX, 3);
    Ok(Some(Probe::quads(&quads, &config.probe.timesteps, editor, rng, device)))
}
