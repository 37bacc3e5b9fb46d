//! The training loop, one for both stages: micro-batches with gradient accumulation, global
//! gradient-norm clipping, AdamW, the probe, sample grids, checkpoints, resume, a guard
//! against non-finite losses and a clean stop on Ctrl-C.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn_dataset::Dataset;
use image::RgbImage;
use loc_core::checkpoint::{CheckpointManifest, save_checkpoint};
use loc_core::clip::ClipVisionModelWithProjection;
use loc_core::device::cast_module;
use loc_core::hypernet::{HypernetConfig, Hypernetwork, select_targets};
use loc_core::pipeline::{EditOptions, InstructPix2Pix};
use loc_core::schedule::{NoiseSchedule, PredictionType};
use loc_core::unet::UNet2DConditionModel;
use loc_core::weights::load_safetensors;
use loc_data::config::OpenedSet;
use loc_data::loader::{PairBatch, Prepare, prepare_pair};
use loc_data::pipeline::{PreparedPair, PreparedQuad, Preprocess, quad_tensors};
use loc_data::record::QuadRecord;
use rand::RngExt;
use rand::rngs::StdRng;

use crate::cache::{CachedItem, EncodedBatch, Encoders, EncodingCache};
use crate::checkpoint::{self, OPTIMIZER_FILE, TrainerState};
use crate::config::{Config, EvalConfig, Stage};
use crate::logging::Logger;
use crate::models::{LoadedEditor, copy_dir, save_editor, save_image_encoder, tiny_editor, tiny_vision_config};
use crate::objective::{
    Generator, Loss, editor_loss, lora_reverse_loss, lora_reverse_loss_encoded, quad_loss, step_rng, text_states,
};
use crate::optim::{AdamW, grad_norm, learning_rate, unfreeze};
use crate::probe::{Probe, ProbeResult};
use loc_eval::generate::tensor_image as to_image;
use loc_eval::metrics::embedding::MetricModels;
use loc_eval::quads::{LoraGenerator, QuadEval, QuadReport};
use loc_eval::report::contact_sheet;

/// Instructions read from each data set to build a fresh editor's tokenizer.
const VOCABULARY_SAMPLE: usize = 2000;
/// Pairs in a sample grid.
const GRID_PAIRS: usize = 4;

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
#[derive(Debug)]
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

    fn len(&self) -> usize {
        match self {
            Batch::Images(batch) => batch.ids.len(),
            Batch::Encoded(batch) => batch.len(),
        }
    }
}

/// What differs between the stages.
trait Trainee {
    type Weights: Module;
    fn weights(&self) -> Self::Weights;
    fn set_weights(&mut self, weights: Self::Weights);
    fn loss(&self, batch: &Batch, config: &Config, rng: &mut StdRng) -> Loss;
    fn editor(&self) -> &InstructPix2Pix;
    fn probe(&self, probe: &Probe, config: &Config) -> ProbeResult;
    /// A row per pair of the grid.
    fn grid(&self, probe: &Probe, options: &EditOptions, config: &Config) -> Vec<Vec<RgbImage>>;
    /// Writes the trained weights as a loadable model into `dir`.
    fn export(&self, dir: &Path) -> anyhow::Result<()>;
    /// Loads the weights an [`export`](Self::export) wrote.
    fn restore(&mut self, dir: &Path, config: &Config) -> anyhow::Result<()>;
    fn evaluate(&self, quads: &[PreparedQuad], eval: &Evaluation, config: &Config) -> (QuadReport, RgbImage);
    const EXPORT: &'static str;
}

#[derive(Module, Debug)]
pub struct EditorWeights {
    pub unet: UNet2DConditionModel,
    pub text_encoder: loc_core::clip::ClipTextModel,
}

struct EditorTrainee {
    editor: InstructPix2Pix,
    /// Where the tokenizer (and VAE) files are copied from.
    files_from: PathBuf,
    schedule: NoiseSchedule,
}

impl Trainee for EditorTrainee {
    type Weights = EditorWeights;
    const EXPORT: &'static str = "editor";

    fn weights(&self) -> EditorWeights {
        EditorWeights { unet: self.editor.unet.clone(), text_encoder: self.editor.text_encoder.clone() }
    }

    fn set_weights(&mut self, weights: EditorWeights) {
        self.editor.unet = weights.unet;
        self.editor.text_encoder = weights.text_encoder;
    }

    fn loss(&self, batch: &Batch, config: &Config, rng: &mut StdRng) -> Loss {
        let Batch::Images(batch) = batch else { unreachable!("validated: the editor stage caches nothing") };
        let dropout = config.objective.conditioning_dropout;
        let (before, after) = (batch.before.clone(), batch.after.clone());
        editor_loss(&self.editor, &self.schedule, before, after, &batch.instructions, dropout, rng)
    }

    fn editor(&self) -> &InstructPix2Pix {
        &self.editor
    }

    fn probe(&self, probe: &Probe, _config: &Config) -> ProbeResult {
        probe.run(&self.editor.valid(), None)
    }

    fn grid(&self, probe: &Probe, options: &EditOptions, _config: &Config) -> Vec<Vec<RgbImage>> {
        let n = probe.instructions.len().min(GRID_PAIRS);
        let before = probe.before.clone().narrow(0, 0, n);
        let prompts: Vec<&str> = probe.instructions.iter().take(n).map(String::as_str).collect();
        let editor = self.editor.valid();
        let edited = editor.edit_with_prompts(before.clone(), &prompts, None, options);
        let null = editor.edit_with_prompts(before.clone(), &vec![""; n], None, options);
        let after = probe.after.clone().narrow(0, 0, n);
        (0..n)
            .map(|i| [&before, &after, &edited, &null].map(|t| to_image(t.clone().narrow(0, i, 1))).to_vec())
            .collect()
    }

    fn export(&self, dir: &Path) -> anyhow::Result<()> {
        save_editor(&self.editor, &self.files_from, dir)
    }

    fn restore(&mut self, dir: &Path, config: &Config) -> anyhow::Result<()> {
        let loaded = InstructPix2Pix::load(dir, &self.editor.unet.conv_in.weight.device())?;
        self.editor = trainable_editor(loaded, config);
        Ok(())
    }

    fn evaluate(&self, quads: &[PreparedQuad], eval: &Evaluation, config: &Config) -> (QuadReport, RgbImage) {
        let device = self.editor.unet.conv_in.weight.device().inner();
        let editor = self.editor.valid();
        evaluate_quads(&editor, None, "", quads, eval, config, &device)
    }
}

/// The `[eval]` section with the metric models it names.
pub struct Evaluation<'a> {
    pub config: &'a EvalConfig,
    pub models: MetricModels,
}

/// The end-of-run quad evaluation.
fn evaluate_quads(
    editor: &InstructPix2Pix,
    generator: Option<LoraGenerator>,
    prompt: &str,
    quads: &[PreparedQuad],
    eval: &Evaluation,
    config: &Config,
    device: &Device,
) -> (QuadReport, RgbImage) {
    let (sampling, models) = (eval.config.sampling(), &eval.models);
    let (seed, sheet) = (config.seed, eval.config.sheet);
    QuadEval { editor, generator, sampling, prompt, seed, sheet, models, device }.evaluate(quads)
}

/// The editor with its UNet (and text encoder, unless frozen) trainable.
fn trainable_editor(mut editor: InstructPix2Pix, config: &Config) -> InstructPix2Pix {
    editor.unet = unfreeze(editor.unet);
    if config.model.train_text_encoder {
        editor.text_encoder = unfreeze(editor.text_encoder);
    }
    editor
}

#[derive(Module, Debug)]
pub struct HypernetWeights {
    pub hypernet: Hypernetwork,
    pub encoder: ClipVisionModelWithProjection,
}

struct HypernetTrainee {
    editor: InstructPix2Pix,
    /// The same frozen editor on the plain device, for probes and sampling.
    editor_valid: InstructPix2Pix,
    editor_dir: PathBuf,
    weights: HypernetWeights,
    hypernet_config: HypernetConfig,
    /// The configured frozen encoder's folder (`None`: the encoder trains and is saved).
    frozen_encoder: Option<PathBuf>,
    prompt: Tensor<3>,
    /// The quad term's data (`objective.quad_weight > 0`).
    quads: Option<QuadSampler>,
    schedule: NoiseSchedule,
    patches: bool,
    target_suffixes: Vec<String>,
    resolution: u32,
}

impl HypernetTrainee {
    fn generator<'a>(&self, weights: &'a HypernetWeights) -> Generator<'a> {
        Generator { encoder: &weights.encoder, hypernet: &weights.hypernet, patches: self.patches }
    }
}

impl Trainee for HypernetTrainee {
    type Weights = HypernetWeights;
    const EXPORT: &'static str = "loc";

    fn weights(&self) -> HypernetWeights {
        self.weights.clone()
    }

    fn set_weights(&mut self, weights: HypernetWeights) {
        self.weights = weights;
    }

    fn loss(&self, batch: &Batch, config: &Config, rng: &mut StdRng) -> Loss {
        let generator = self.generator(&self.weights);
        let prompt = self.prompt.clone();
        let objective = &config.objective;
        let (editor, schedule) = (&self.editor, &self.schedule);
        let mut loss = match batch {
            Batch::Images(b) => {
                let (before, after) = (b.before.clone(), b.after.clone());
                lora_reverse_loss(editor, &generator, schedule, before, after, prompt, objective, rng)
            }
            Batch::Encoded(b) => lora_reverse_loss_encoded(editor, &generator, schedule, b, prompt, objective, rng),
        };
        if let Some(quads) = &self.quads {
            let device = self.prompt.device();
            let images = quads.draw(batch.len(), rng, &device);
            let term = quad_loss(&self.editor, &generator, &self.schedule, images, self.prompt.clone(), rng);
            loss.total = loss.total + term.clone().mul_scalar(objective.quad_weight);
            loss.terms.push(("loss/quad", term));
        }
        loss
    }

    fn editor(&self) -> &InstructPix2Pix {
        &self.editor
    }

    fn probe(&self, probe: &Probe, config: &Config) -> ProbeResult {
        let weights = self.weights.valid();
        let lora = self.generator(&weights).generate(probe.before.clone(), probe.after.clone());
        probe.run(&self.editor_valid, Some((&lora, &config.objective.prompt)))
    }

    fn grid(&self, probe: &Probe, options: &EditOptions, config: &Config) -> Vec<Vec<RgbImage>> {
        let n = probe.instructions.len().min(GRID_PAIRS);
        let (a, a_edited) = (probe.before.clone().narrow(0, 0, n), probe.after.clone().narrow(0, 0, n));
        let (b, b_edited) = (a.clone().flip([3]), a_edited.clone().flip([3]));
        let weights = self.weights.valid();
        let lora = self.generator(&weights).generate(a.clone(), a_edited.clone());
        let prompts = vec![config.objective.prompt.as_str(); n];
        let generated = self.editor_valid.edit_with_prompts(b.clone(), &prompts, Some(&lora), options);
        (0..n)
            .map(|i| [&a, &a_edited, &b, &generated, &b_edited].map(|t| to_image(t.clone().narrow(0, i, 1))).to_vec())
            .collect()
    }

    fn export(&self, dir: &Path) -> anyhow::Result<()> {
        let image_encoder = match &self.frozen_encoder {
            Some(path) => absolute(path)?,
            None => {
                save_image_encoder(&self.weights.encoder, &dir.join("image_encoder"))?;
                PathBuf::from("image_encoder")
            }
        };
        let manifest = CheckpointManifest {
            format_version: 1,
            editor: absolute(&self.editor_dir)?,
            image_encoder,
            hypernet: self.hypernet_config.clone(),
            target_suffixes: self.target_suffixes.clone(),
            resolution: self.resolution,
            step: 0,
        };
        save_checkpoint(dir, &manifest, &self.weights.hypernet)?;
        Ok(())
    }

    fn restore(&mut self, dir: &Path, _config: &Config) -> anyhow::Result<()> {
        let hypernet = self.weights.hypernet.clone();
        let hypernet = load_safetensors(hypernet, &dir.join("hypernet.safetensors"))?;
        let saved_encoder = dir.join("image_encoder");
        let encoder = if self.frozen_encoder.is_none() && saved_encoder.exists() {
            unfreeze(ClipVisionModelWithProjection::load(&saved_encoder, &self.prompt.device())?)
        } else {
            self.weights.encoder.clone()
        };
        self.weights = HypernetWeights { hypernet, encoder };
        Ok(())
    }

    fn evaluate(&self, quads: &[PreparedQuad], eval: &Evaluation, config: &Config) -> (QuadReport, RgbImage) {
        let weights = self.weights.valid();
        let generator = self.generator(&weights);
        let device = self.prompt.device().inner();
        let generate = |a, a_edited| generator.generate(a, a_edited);
        evaluate_quads(&self.editor_valid, Some(&generate), &config.objective.prompt, quads, eval, config, &device)
    }
}

/// Random quads for the quad term, drawn with the step's generator.
struct QuadSampler {
    quads: Arc<dyn Dataset<QuadRecord>>,
    preprocess: Preprocess,
}

impl QuadSampler {
    /// `[A, A', B, B']` for `n` quads; unreadable ones are redrawn (a data set whose every
    /// quad fails stops after a bounded number of tries).
    fn draw(&self, n: usize, rng: &mut StdRng, device: &Device) -> [Tensor<4>; 4] {
        let mut quads: Vec<PreparedQuad> = Vec::with_capacity(n);
        for _ in 0..64 * n {
            if quads.len() == n {
                break;
            }
            let index = rng.random_range(0..self.quads.len());
            if let Some(quad) = self.quads.get(index).ok().and_then(|q| self.preprocess.quad(&q, rng).ok()) {
                quads.push(quad);
            }
        }
        assert!(!quads.is_empty(), "no readable quad in 64 draws per item of the quad term");
        quad_tensors(&quads, device)
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(path).with_context(|| format!("resolving {}", path.display()))
}

/// Runs `config` on `device` (without autodiff; the run adds it): builds the models, trains,
/// exports and evaluates.
pub fn run(config: &Config, options: &RunOptions, device: &Device) -> anyhow::Result<RunSummary> {
    let device = device.clone().autodiff();
    let device = if config.train.gradient_checkpointing { device.gradient_checkpointing() } else { device };
    let precision = config.train.precision;
    precision.check(&device)?;
    device.seed(config.seed);
    std::fs::create_dir_all(&config.output_dir).with_context(|| format!("creating {}", config.output_dir.display()))?;
    let sets = config.data.open(config.seed, options.echo)?;
    match config.stage {
        Stage::Editor => {
            let LoadedEditor { editor, files_from } = match (&config.model.editor, config.model.editor_preset) {
                (Some(dir), _) => {
                    let files = config.output_dir.join("editor-files");
                    for sub in ["tokenizer", "vae"] {
                        if dir.join(sub).exists() {
                            copy_dir(&dir.join(sub), &files.join(sub))?;
                        }
                    }
                    LoadedEditor { editor: InstructPix2Pix::load(dir, &device)?, files_from: files }
                }
                (None, _) => {
                    let instructions = vocabulary(&sets);
                    let prediction = config.model.prediction_type.unwrap_or(PredictionType::Epsilon);
                    tiny_editor(&instructions, prediction, &config.output_dir.join("editor-files"), &device)?
                }
            };
            let schedule = NoiseSchedule::new(&editor.scheduler);
            // Only the VAE is frozen and never exported here: it alone takes the precision.
            let editor = InstructPix2Pix { vae: editor.vae.map(|vae| cast_module(vae, precision)), ..editor };
            let trainee = EditorTrainee { editor: trainable_editor(editor, config), files_from, schedule };
            train(trainee, config, &sets, options, &device, None)
        }
        Stage::Hypernet => {
            let editor_dir = config.model.editor.clone().expect("validated: the hypernet stage names its editor");
            let editor = InstructPix2Pix::load(&editor_dir, &device)?.with_precision(precision);
            let (encoder, frozen_encoder) = match &config.model.image_encoder {
                Some(dir) => (ClipVisionModelWithProjection::load(dir, &device)?, Some(dir.clone())),
                None => {
                    let tiny = tiny_vision_config(config.data.resolution as usize);
                    (ClipVisionModelWithProjection::new(&tiny, &device), None)
                }
            };
            let (encoder, frozen_encoder) = if config.model.train_image_encoder {
                (unfreeze(encoder), None)
            } else {
                (cast_module(encoder, precision), frozen_encoder)
            };
            let h = &config.model.hypernet;
            let hypernet_config = HypernetConfig::new(encoder.config.hidden_size)
                .with_rank(h.rank)
                .with_width(h.width)
                .with_heads(h.heads)
                .with_depth(h.depth)
                .with_patch_dim(h.patches.then_some(encoder.config.hidden_size))
                .with_down_init_std(h.down_init_std);
            let suffixes: Vec<&str> = config.model.target_suffixes.iter().map(String::as_str).collect();
            let targets = select_targets(&editor.unet.lora_targets(), &suffixes);
            if targets.is_empty() {
                bail!("model.target_suffixes {suffixes:?} match no layer of the editor's UNet");
            }
            let hypernet = hypernet_config.init(&targets, &device);
            let prompt = text_states(&editor, std::slice::from_ref(&config.objective.prompt), &device);
            let mut trainee = HypernetTrainee {
                schedule: NoiseSchedule::new(&editor.scheduler),
                editor_valid: editor.valid(),
                editor,
                quads: match (&config.objective.quads, config.objective.quad_weight > 0.0) {
                    (Some(source), true) => Some(QuadSampler {
                        quads: source.open_quads(config.seed, config.data.resolution)?,
                        preprocess: config.data.preprocess(),
                    }),
                    _ => None,
                },
                editor_dir,
                weights: HypernetWeights { hypernet, encoder },
                hypernet_config,
                frozen_encoder,
                prompt,
                patches: h.patches,
                target_suffixes: config.model.target_suffixes.clone(),
                resolution: config.data.resolution,
            };
            if let Some(init) = &config.model.hypernet_init {
                trainee.restore(init, config).with_context(|| format!("model.hypernet_init {}", init.display()))?;
            }
            let cache = match (&config.data.cache, &trainee.frozen_encoder) {
                (Some(dir), Some(encoder_dir)) => {
                    let models = Encoders {
                        editor: &trainee.editor_valid,
                        editor_dir: &trainee.editor_dir,
                        encoder: &trainee.weights.encoder.valid(),
                        encoder_dir,
                        patches: h.patches,
                        precision,
                    };
                    let plain = device.clone().inner();
                    Some(EncodingCache::build(dir, &config.data, &sets, &models, &plain, options.echo)?)
                }
                _ => None,
            };
            train(trainee, config, &sets, options, &device, cache)
        }
    }
}

/// The first instructions of every data set (a fresh tokenizer's words).
fn vocabulary(sets: &[OpenedSet]) -> Vec<String> {
    let mut texts = Vec::new();
    for set in sets {
        for i in 0..set.dataset.len().min(VOCABULARY_SAMPLE) {
            if let Ok(record) = set.dataset.get(i) {
                texts.push(record.instruction);
            }
        }
    }
    texts
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

fn train<T: Trainee>(
    mut trainee: T,
    config: &Config,
    sets: &[OpenedSet],
    options: &RunOptions,
    device: &Device,
    cache: Option<EncodingCache>,
) -> anyhow::Result<RunSummary> {
    let out = &config.output_dir;
    let mut state = TrainerState { step: 0, updates: 0, bad_steps: 0, config: config.to_toml() };
    let mut optim = AdamW::new(&config.optim);
    if let Some(which) = &options.resume {
        let dir = checkpoint::resolve(out, which)?;
        state = checkpoint::read_state(&dir)?;
        if state.config != config.to_toml() {
            eprintln!(
                "note: resuming {} with a configuration that differs from the one it was written with",
                dir.display()
            );
            state.config = config.to_toml();
        }
        trainee.restore(&dir.join(T::EXPORT), config)?;
        optim = AdamW::load(&config.optim, &dir.join(OPTIMIZER_FILE), state.updates, device)?;
    }
    let total = config.train.steps;
    let mut logger = Logger::new(out, state.step, total, options.echo);
    let probe_pairs = validation_pairs(config, sets, config.probe.pairs)?;
    let plain = device.clone().inner();
    let (probe, quad_probe) = {
        let frozen = trainee.editor().valid();
        let pairs = Probe::new(&probe_pairs, &config.probe.timesteps, &frozen, config.seed, &plain);
        (pairs, quad_probe(config, &frozen, &plain)?)
    };
    let sample_options = config.eval.as_ref().map_or(EditOptions::default(), |e| EditOptions {
        steps: e.steps,
        text_guidance: e.text_guidance,
        image_guidance: e.image_guidance,
        lora_guidance: e.lora_guidance,
        seed: config.seed,
    });
    let loader = Arc::new(config.data.train_loader(sets, config.train.batch_size, config.seed));
    let accum = config.train.grad_accum as u64;
    let prepare: Arc<Prepare<Prepared>> = match cache {
        None => {
            Arc::new(|source, index, preprocess, rng| prepare_pair(source, index, preprocess, rng).map(Prepared::Pair))
        }
        Some(cache) => Arc::new(move |source, index, preprocess, rng| {
            cache.prepare(source, index, preprocess, rng).map(Prepared::Cached)
        }),
    };
    let batches = loader.clone().prefetch_with(state.step * accum, 4, prepare);
    let stop = Arc::new(AtomicBool::new(false));
    if options.echo {
        let flag = stop.clone();
        // A second handler cannot be installed (tests, repeated runs): Ctrl-C then kills as usual.
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }
    let mut summary = RunSummary {
        losses: Vec::new(),
        probes: Vec::new(),
        quad_probes: Vec::new(),
        steps_done: 0,
        bad_steps: 0,
        exported: None,
        report: None,
    };
    let probe_now = |trainee: &T, step: u64, logger: &mut Logger, summary: &mut RunSummary| {
        let result = trainee.probe(&probe, config);
        let quad_result = quad_probe.as_ref().map(|quads| trainee.probe(quads, config));
        let mut scalars = result.scalars("");
        scalars.extend(quad_result.iter().flat_map(|r| r.scalars("quad_")));
        let tagged: Vec<(&str, f64)> = scalars.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        logger.scalars(step, &tagged);
        let text = scalars.iter().map(|(k, v)| format!("{k} {v:.5}")).collect::<Vec<_>>().join(", ");
        logger.line(&format!("step {step}: {text}"));
        summary.probes.push((step, result));
        summary.quad_probes.extend(quad_result.map(|r| (step, r)));
    };
    if state.step == 0 {
        probe_now(&trainee, 0, &mut logger, &mut summary);
    }
    let mut bad_in_a_row = 0;
    let mut ran = 0;
    while state.step < total {
        if stop.load(Ordering::SeqCst) || options.stop_after.is_some_and(|n| ran >= n) {
            logger.line(&format!("stopping at step {}: writing a checkpoint", state.step));
            let dir = save(&trainee, &optim, &state, config)?;
            logger.line(&format!("checkpoint {}", dir.display()));
            logger.finish();
            summary.steps_done = state.step;
            summary.bad_steps = state.bad_steps;
            return Ok(summary);
        }
        let started = Instant::now();
        let step = state.step;
        let lr = learning_rate(&config.optim, step, total);
        let mut accumulator = GradientsAccumulator::<T::Weights>::new();
        let weights = trainee.weights();
        let mut loss_sum = 0.0;
        let mut terms: Vec<(&'static str, f64)> = Vec::new();
        for micro in 0..accum {
            let batch = Batch::new(batches.recv().context("the data loader stopped")??, device);
            let mut rng = step_rng(config.seed, step, micro);
            let loss = trainee.loss(&batch, config, &mut rng);
            for (name, value) in &loss.terms {
                let value = value.clone().into_scalar::<f32>() as f64 / accum as f64;
                match terms.iter_mut().find(|(n, _)| n == name) {
                    Some((_, sum)) => *sum += value,
                    None => terms.push((name, value)),
                }
            }
            loss_sum += loss.total.clone().into_scalar::<f32>() as f64 / accum as f64;
            accumulator.accumulate(&weights, GradientsParams::from_grads(loss.total.backward(), &weights));
        }
        let grads = accumulator.grads();
        let norm = grad_norm(&weights, &grads) / accum as f64;
        state.step += 1;
        ran += 1;
        if !loss_sum.is_finite() || !norm.is_finite() {
            state.bad_steps += 1;
            bad_in_a_row += 1;
            logger.line(&format!("step {step}: non-finite loss ({loss_sum}) or gradient norm ({norm}): skipped"));
            if bad_in_a_row >= config.train.max_bad_steps {
                bail!(
                    "{bad_in_a_row} non-finite losses in a row (step {step}): stopping. Lower optim.learning_rate \
                     or optim.grad_clip_norm, or resume from an earlier checkpoint."
                );
            }
            continue;
        }
        bad_in_a_row = 0;
        let clip = config.optim.grad_clip_norm;
        let clip_scale = if clip > 0.0 && norm > clip { clip / norm } else { 1.0 };
        trainee.set_weights(optim.step(weights, grads, clip_scale / accum as f64, lr));
        state.updates = optim.updates;
        summary.losses.push((step, loss_sum));
        let seconds = started.elapsed().as_secs_f64();
        let pairs_per_s = (config.train.batch_size as u64 * accum) as f64 / seconds;
        let plain = state.step.is_multiple_of(config.train.log_every);
        if plain {
            let mut scalars = vec![("loss/total", loss_sum), ("lr", lr), ("grad_norm", norm)];
            scalars.extend(terms.iter().copied());
            scalars.extend([("time/step_s", seconds), ("time/pairs_per_s", pairs_per_s)]);
            logger.scalars(state.step, &scalars);
        }
        logger.progress(state.step, &format!("loss {loss_sum:.4}, {pairs_per_s:.1} pairs/s"), plain);
        if state.step.is_multiple_of(config.probe.every) || state.step == total {
            probe_now(&trainee, state.step, &mut logger, &mut summary);
        }
        if config.train.sample_every > 0
            && (state.step.is_multiple_of(config.train.sample_every) || state.step == total)
        {
            let grid = contact_sheet(&trainee.grid(&probe, &sample_options, config), 4 * config.data.resolution);
            logger.image("samples", &grid, state.step);
            let path = out.join("samples").join(format!("step-{:08}.png", state.step));
            std::fs::create_dir_all(out.join("samples"))?;
            grid.save(&path).with_context(|| format!("writing {}", path.display()))?;
        }
        if state.step.is_multiple_of(config.train.checkpoint_every) || state.step == total {
            save(&trainee, &optim, &state, config)?;
            logger.flush();
        }
    }
    logger.finish();
    let exported = out.join(T::EXPORT);
    trainee.export(&exported)?;
    if options.echo {
        println!("exported {}", exported.display());
    }
    if let Some(eval) = &config.eval {
        let (quads, unreadable) =
            loc_eval::quads::prepare_quads(&eval.quads, eval.count, config.seed, config.data.resolution)?;
        if unreadable > 0 {
            eprintln!("evaluation: {unreadable} unreadable quads left out");
        }
        let models = MetricModels::load(eval.clip.as_deref(), eval.dino.as_deref(), &device.clone().inner())?;
        let (report, sheet) = trainee.evaluate(&quads, &Evaluation { config: eval, models }, config);
        report.write(out)?;
        sheet.save(out.join("examples.png")).context("writing the contact sheet")?;
        if options.echo {
            println!("{}", report.markdown());
        }
        summary.report = Some(report);
    }
    summary.steps_done = state.step;
    summary.bad_steps = state.bad_steps;
    summary.exported = Some(exported);
    Ok(summary)
}

fn save<T: Trainee>(trainee: &T, optim: &AdamW, state: &TrainerState, config: &Config) -> anyhow::Result<PathBuf> {
    checkpoint::write(&config.output_dir, state, config.train.keep_checkpoints, |dir| {
        trainee.export(&dir.join(T::EXPORT))?;
        optim.save(&dir.join(OPTIMIZER_FILE))
    })
}
