//! The hypernet stage: `H` (and optionally the image encoder) with LoRA Reverse, the editor
//! frozen; the quad term's sampler; the encoding cache built before the first step.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn_dataset::Dataset;
use image::RgbImage;
use loc_core::checkpoint::{CheckpointManifest, HYPERNET_FILE, IMAGE_ENCODER_DIR, save_checkpoint};
use loc_core::clip::ClipVisionModelWithProjection;
use loc_core::device::cast_module;
use loc_core::hypernet::{HypernetConfig, Hypernetwork, select_targets};
use loc_core::pipeline::{EditOptions, InstructPix2Pix};
use loc_core::schedule::NoiseSchedule;
use loc_core::weights::load_safetensors;
use loc_data::config::OpenedSet;
use loc_data::pipeline::{PreparedQuad, Preprocess, images_to_tensor, quad_tensors};
use loc_data::record::QuadRecord;
use loc_data::world::{ChainedSample, SyntheticWorld};
use loc_eval::quads::QuadReport;
use rand::RngExt;

use super::{Batch, Evaluation, Trainee};
use crate::cache::{Encoders, EncodingCache};
use crate::config::Config;
use crate::models::{save_image_encoder, tiny_vision_config};
use crate::objective::{
    ChainedBatch, Generator, Loss, SampleRngs, compose_loss, lora_reverse_loss, lora_reverse_loss_encoded, quad_loss,
    text_states,
};
use crate::optim::unfreeze;
use crate::probe::{Probe, ProbeResult};

#[derive(Module, Debug)]
pub struct HypernetWeights {
    pub hypernet: Hypernetwork,
    pub encoder: ClipVisionModelWithProjection,
}

pub(super) struct HypernetTrainee {
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
    /// The composition term's world (`objective.compose_weight > 0`).
    compose_world: Option<SyntheticWorld>,
    schedule: NoiseSchedule,
    target_suffixes: Vec<String>,
    resolution: u32,
}

impl HypernetTrainee {
    /// The frozen editor, the image encoder (loaded or fresh, frozen or trained), `H` for the
    /// configured targets (or from `model.hypernet_init`), and the encoding cache if asked for.
    pub(super) fn build(
        config: &Config,
        sets: &[OpenedSet],
        echo: bool,
        device: &Device,
    ) -> anyhow::Result<(Self, Option<EncodingCache>)> {
        let precision = config.train.precision;
        let editor_dir = config.model.editor.clone().expect("validated: the hypernet stage names its editor");
        let editor = InstructPix2Pix::load(&editor_dir, device)?.with_precision(precision);
        // A fresh encoder and `H` are drawn on the CPU from the run's seed, then forked onto the
        // device (fresh leaves there): a seed starts the same weights on every backend (a GPU's
        // generator draws other numbers).
        let host = Device::flex().with_autodiff_context_from(device);
        host.seed(config.seed);
        let (encoder, frozen_encoder) = match &config.model.image_encoder {
            Some(dir) => (ClipVisionModelWithProjection::load(dir, device)?, Some(dir.clone())),
            None => {
                let tiny = tiny_vision_config(config.data.resolution as usize);
                (fork_from_host(ClipVisionModelWithProjection::new(&tiny, &host), device), None)
            }
        };
        let (encoder, frozen_encoder) = if config.model.train_image_encoder {
            (unfreeze(encoder), None)
        } else {
            (cast_module(encoder, precision), frozen_encoder)
        };
        let hypernet_config = config.model.hypernet.config(encoder.config.hidden_size);
        let suffixes: Vec<&str> = config.model.target_suffixes.iter().map(String::as_str).collect();
        let targets = select_targets(&editor.unet.lora_targets(), &suffixes);
        if targets.is_empty() {
            bail!("model.target_suffixes {suffixes:?} match no layer of the editor's UNet");
        }
        let hypernet = fork_from_host(hypernet_config.init(&targets, &host), device);
        let prompt = text_states(&editor, std::slice::from_ref(&config.objective.prompt), device);
        let quads = match (&config.objective.quads, config.objective.quad_weight > 0.0) {
            (Some(source), true) => Some(QuadSampler {
                quads: source.open_quads(config.seed, config.data.resolution)?,
                preprocess: config.data.preprocess(),
            }),
            _ => None,
        };
        let compose_world = match (&config.objective.compose_world, config.objective.compose_weight > 0.0) {
            (Some(world), true) => Some(world.world(config.data.resolution, config.seed)?),
            _ => None,
        };
        let mut trainee = Self {
            schedule: NoiseSchedule::new(&editor.scheduler),
            editor_valid: editor.valid(),
            editor,
            quads,
            compose_world,
            editor_dir,
            weights: HypernetWeights { hypernet, encoder },
            hypernet_config,
            frozen_encoder,
            prompt,
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
                    patches: config.model.hypernet.patches,
                    precision,
                };
                let plain = device.clone().inner();
                Some(EncodingCache::build(dir, &config.data, sets, &models, &plain, echo)?)
            }
            _ => None,
        };
        Ok((trainee, cache))
    }

    fn generator<'a>(&self, weights: &'a HypernetWeights) -> Generator<'a> {
        let patches = self.hypernet_config.patch_dim.is_some();
        Generator { encoder: &weights.encoder, hypernet: &weights.hypernet, patches }
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

    fn replica(&self, device: &Device) -> Self {
        let editor = self.editor.fork(device);
        Self {
            editor_valid: editor.valid(),
            editor,
            editor_dir: self.editor_dir.clone(),
            weights: self.weights.clone().fork(device),
            hypernet_config: self.hypernet_config.clone(),
            frozen_encoder: self.frozen_encoder.clone(),
            prompt: self.prompt.clone().to_device(device),
            quads: self.quads.clone(),
            compose_world: self.compose_world.clone(),
            schedule: self.schedule.clone(),
            target_suffixes: self.target_suffixes.clone(),
            resolution: self.resolution,
        }
    }

    fn loss(&self, batch: &Batch, config: &Config, rngs: &mut SampleRngs) -> Loss {
        let generator = self.generator(&self.weights);
        let prompt = self.prompt.clone();
        let objective = &config.objective;
        let (editor, schedule) = (&self.editor, &self.schedule);
        let mut loss = match batch {
            Batch::Images(b) => {
                let (before, after) = (b.before.clone(), b.after.clone());
                lora_reverse_loss(editor, &generator, schedule, before, after, prompt, objective, rngs)
            }
            Batch::Encoded(b) => lora_reverse_loss_encoded(editor, &generator, schedule, b, prompt, objective, rngs),
        };
        if let Some(quads) = &self.quads {
            let device = self.prompt.device();
            let images = quads.draw(rngs, &device);
            let term = quad_loss(&self.editor, &generator, &self.schedule, images, self.prompt.clone(), rngs);
            loss.total = loss.total + term.clone().mul_scalar(objective.quad_weight);
            loss.terms.push(("loss/quad", term));
        }
        if let Some(world) = &self.compose_world {
            let batch = draw_chained(world, rngs, &self.prompt.device());
            let term = compose_loss(&self.editor, &generator, &self.schedule, batch, self.prompt.clone(), rngs);
            loss.total = loss.total + term.clone().mul_scalar(objective.compose_weight);
            loss.terms.push(("loss/compose", term));
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

    /// `A`, `A'`, `B` (the mirrored `A`), `G(H(A, A'), B)`, and the mirrored `A'` it should
    /// approach.
    fn grid(&self, probe: &Probe, count: usize, options: &EditOptions, config: &Config) -> Vec<Tensor<4>> {
        let (a, a_edited) = (probe.before.clone().narrow(0, 0, count), probe.after.clone().narrow(0, 0, count));
        let (b, b_edited) = (a.clone().flip([3]), a_edited.clone().flip([3]));
        let weights = self.weights.valid();
        let lora = self.generator(&weights).generate(a.clone(), a_edited.clone());
        let prompts = vec![config.objective.prompt.as_str(); count];
        let generated = self.editor_valid.edit_with_prompts(b.clone(), &prompts, Some(&lora), options);
        vec![a, a_edited, b, generated, b_edited]
    }

    fn export(&self, dir: &Path, step: u64) -> anyhow::Result<()> {
        let image_encoder = match &self.frozen_encoder {
            Some(path) => absolute(path)?,
            None => {
                save_image_encoder(&self.weights.encoder, &dir.join(IMAGE_ENCODER_DIR))?;
                PathBuf::from(IMAGE_ENCODER_DIR)
            }
        };
        let manifest = CheckpointManifest {
            format_version: 1,
            editor: absolute(&self.editor_dir)?,
            image_encoder,
            hypernet: self.hypernet_config.clone(),
            target_suffixes: self.target_suffixes.clone(),
            resolution: self.resolution,
            step,
        };
        save_checkpoint(dir, &manifest, &self.weights.hypernet)?;
        Ok(())
    }

    fn restore(&mut self, dir: &Path, _config: &Config) -> anyhow::Result<()> {
        let hypernet = load_safetensors(self.weights.hypernet.clone(), &dir.join(HYPERNET_FILE))?;
        let saved_encoder = dir.join(IMAGE_ENCODER_DIR);
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
        eval.run(&self.editor_valid, Some(&generate), &config.objective.prompt, quads, config, &device)
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(path).with_context(|| format!("resolving {}", path.display()))
}

/// Random quads for the quad term, each drawn from its sample's stream.
#[derive(Clone)]
struct QuadSampler {
    quads: Arc<dyn Dataset<QuadRecord>>,
    preprocess: Preprocess,
}

impl QuadSampler {
    /// `[A, A', B, B']`, one quad per sample of `rngs`; unreadable ones are redrawn (a data
    /// set whose quads nearly all fail stops after a bounded number of tries).
    fn draw(&self, rngs: &mut SampleRngs, device: &Device) -> [Tensor<4>; 4] {
        let quads: Vec<PreparedQuad> = (0..rngs.len())
            .map(|i| {
                let rng = rngs.sample(i);
                (0..64)
                    .find_map(|_| {
                        let index = rng.random_range(0..self.quads.len());
                        self.quads.get(index).ok().and_then(|q| self.preprocess.quad(&q, rng).ok())
                    })
                    .expect("no readable quad in 64 draws for an item of the quad term")
            })
            .collect();
        quad_tensors(&quads, device)
    }
}

/// One chained item of `world` per sample of `rngs`, each drawn from its sample's stream.
fn draw_chained(world: &SyntheticWorld, rngs: &mut SampleRngs, device: &Device) -> ChainedBatch {
    let items: Vec<ChainedSample> = (0..rngs.len())
        .map(|i| {
            let index = rngs.sample(i).random_range(0..world.len);
            world.chained(index).expect("validated: the composition world draws scene and pixel kinds")
        })
        .collect();
    let stack = |f: fn(&ChainedSample) -> &RgbImage| images_to_tensor(&items.iter().map(f).collect::<Vec<_>>(), device);
    ChainedBatch {
        a: stack(|c| &c.a),
        a_first: stack(|c| &c.a_first),
        a_second: stack(|c| &c.a_second),
        b: stack(|c| &c.b),
        b_both: stack(|c| &c.b_both),
    }
}

/// `module`, made on the CPU, forked onto `device` as fresh leaves. burn initialises a parameter
/// lazily, on the device it is first read on, so each is read here first: otherwise the fork
/// would draw it from the device's own generator.
fn fork_from_host<M: Module>(module: M, device: &Device) -> M {
    struct Materialise;
    impl ModuleMapper for Materialise {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|tensor| tensor)
        }
    }
    module.map(&mut Materialise).fork(device)
}
