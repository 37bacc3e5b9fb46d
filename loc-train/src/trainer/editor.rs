//! The editor stage: the InstructPix2Pix UNet (and the text encoder unless frozen) on pairs
//! with their text instructions; the VAE stays frozen.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use burn_dataset::Dataset;
use image::RgbImage;
use loc_core::clip::ClipTextModel;
use loc_core::device::cast_module;
use loc_core::pipeline::{EditOptions, InstructPix2Pix};
use loc_core::schedule::{NoiseSchedule, PredictionType};
use loc_core::unet::UNet2DConditionModel;
use loc_data::config::OpenedSet;
use loc_data::pipeline::PreparedQuad;
use loc_eval::quads::QuadReport;

use super::{Batch, Evaluation, Trainee};
use crate::config::Config;
use crate::models::{LoadedEditor, copy_dir, save_editor, tiny_editor};
use crate::objective::{Loss, SampleRngs, editor_loss};
use crate::optim::unfreeze;
use crate::probe::{Probe, ProbeResult};

/// Instructions read from each data set to build a fresh editor's tokenizer.
const VOCABULARY_SAMPLE: usize = 2000;

#[derive(Module, Debug)]
pub struct EditorWeights {
    pub unet: UNet2DConditionModel,
    pub text_encoder: ClipTextModel,
}

pub(super) struct EditorTrainee {
    editor: InstructPix2Pix,
    /// Where the tokenizer (and VAE) files are copied from.
    files_from: PathBuf,
    schedule: NoiseSchedule,
}

impl EditorTrainee {
    /// The editor of `model.editor`, or a fresh one (`editor_preset`) whose tokenizer learns
    /// the data sets' instructions.
    pub(super) fn build(config: &Config, sets: &[OpenedSet], device: &Device) -> anyhow::Result<Self> {
        let files = config.output_dir.join("editor-files");
        let LoadedEditor { editor, files_from } = match &config.model.editor {
            Some(dir) => {
                for sub in ["tokenizer", "vae"] {
                    if dir.join(sub).exists() {
                        copy_dir(&dir.join(sub), &files.join(sub))?;
                    }
                }
                LoadedEditor { editor: InstructPix2Pix::load(dir, device)?, files_from: files }
            }
            None => {
                let prediction = config.model.prediction_type.unwrap_or(PredictionType::Epsilon);
                tiny_editor(&vocabulary(sets), prediction, &files, device)?
            }
        };
        let schedule = NoiseSchedule::new(&editor.scheduler);
        // Only the VAE is frozen and never exported here: it alone takes the precision.
        let vae = editor.vae.map(|vae| cast_module(vae, config.train.precision));
        let editor = trainable(InstructPix2Pix { vae, ..editor }, config);
        Ok(Self { editor, files_from, schedule })
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

/// The editor with its UNet (and text encoder, unless frozen) trainable.
fn trainable(mut editor: InstructPix2Pix, config: &Config) -> InstructPix2Pix {
    editor.unet = unfreeze(editor.unet);
    if config.model.train_text_encoder {
        editor.text_encoder = unfreeze(editor.text_encoder);
    }
    editor
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

    fn replica(&self, device: &Device) -> Self {
        Self { editor: self.editor.fork(device), files_from: self.files_from.clone(), schedule: self.schedule.clone() }
    }

    fn loss(&self, batch: &Batch, config: &Config, rngs: &mut SampleRngs) -> Loss {
        let Batch::Images(batch) = batch else { unreachable!("validated: the editor stage caches nothing") };
        let dropout = config.objective.conditioning_dropout;
        let (before, after) = (batch.before.clone(), batch.after.clone());
        editor_loss(&self.editor, &self.schedule, before, after, &batch.instructions, dropout, rngs)
    }

    fn editor(&self) -> &InstructPix2Pix {
        &self.editor
    }

    fn probe(&self, probe: &Probe, _config: &Config) -> ProbeResult {
        probe.run(&self.editor.valid(), None)
    }

    /// Before, after, edited with the instruction, edited with the empty instruction.
    fn grid(&self, probe: &Probe, count: usize, options: &EditOptions, _config: &Config) -> Vec<Tensor<4>> {
        let before = probe.before.clone().narrow(0, 0, count);
        let prompts: Vec<&str> = probe.instructions.iter().take(count).map(String::as_str).collect();
        let editor = self.editor.valid();
        let edited = editor.edit_with_prompts(before.clone(), &prompts, None, options);
        let null = editor.edit_with_prompts(before.clone(), &vec![""; count], None, options);
        vec![before, probe.after.clone().narrow(0, 0, count), edited, null]
    }

    fn export(&self, dir: &Path, _step: u64) -> anyhow::Result<()> {
        save_editor(&self.editor, &self.files_from, dir)
    }

    fn restore(&mut self, dir: &Path, config: &Config) -> anyhow::Result<()> {
        let loaded = InstructPix2Pix::load(dir, &self.editor.unet.conv_in.weight.device())?;
        self.editor = trainable(loaded, config);
        Ok(())
    }

    fn evaluate(&self, quads: &[PreparedQuad], eval: &Evaluation, config: &Config) -> (QuadReport, RgbImage) {
        let device = self.editor.unet.conv_in.weight.device().inner();
        eval.run(&self.editor.valid(), None, "", quads, config, &device)
    }
}
