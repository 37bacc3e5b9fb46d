//! `loc-eval`'s commands, one module each, and the flags several of them share.

pub mod claims;
pub mod edit;
pub mod export_lora;
pub mod forward;
pub mod generate_magicbrush;
pub mod magicbrush;
pub mod quads;

use std::path::{Path, PathBuf};

use burn::prelude::*;
use loc_core::checkpoint::LocModel;
use loc_core::device::Precision;
use loc_core::pipeline::{EditOptions, Sampling};
use loc_eval::metrics::embedding::{MetricModels, MetricPaths};

/// Where every command runs, from the global flags.
pub struct Env {
    pub device: Device,
    /// The frozen models' dtype (`H` and the metric models stay f32).
    pub precision: Precision,
}

impl Env {
    /// A LoC checkpoint, its frozen models in the chosen precision.
    pub fn load(&self, dir: &Path) -> anyhow::Result<LocModel> {
        Ok(LocModel::load(dir, &self.device)?.with_precision(self.precision))
    }
}

/// The embedding metrics' models; a metric without its model is skipped.
#[derive(clap::Args)]
pub struct MetricArgs {
    /// A CLIP folder (transformers layout, e.g. openai/clip-vit-base-patch32).
    #[arg(long)]
    clip: Option<PathBuf>,
    /// A DINO ViT folder (transformers `ViTModel`, e.g. facebook/dino-vits16).
    #[arg(long)]
    dino: Option<PathBuf>,
    /// An LPIPS folder (`scripts/convert_lpips_weights.py`: AlexNet or VGG16 and the heads).
    #[arg(long)]
    lpips: Option<PathBuf>,
    /// pytorch-fid's Inception-v3 folder (`scripts/convert_fid_inception.py`), for FID.
    #[arg(long)]
    inception: Option<PathBuf>,
}

impl MetricArgs {
    fn load(&self, device: &Device) -> anyhow::Result<MetricModels> {
        let paths = MetricPaths {
            clip: self.clip.clone(),
            dino: self.dino.clone(),
            lpips: self.lpips.clone(),
            inception: self.inception.clone(),
        };
        MetricModels::load(&paths, device)
    }
}

/// DDIM sampling settings shared by the commands that edit.
#[derive(clap::Args)]
pub struct SamplingArgs {
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Instruction guidance: the edit with the LoRA (pair) or the text against the edit
    /// without it.
    #[arg(long, default_value_t = 7.5)]
    guidance: f32,
    /// Image guidance: how close the result stays to the input image.
    #[arg(long, default_value_t = 1.5)]
    image_guidance: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl SamplingArgs {
    /// Options with `--guidance` as the LoRA guidance (`lora = true`) or the text guidance.
    fn options(&self, lora: bool) -> EditOptions {
        let base = Sampling { steps: self.steps, image_guidance: self.image_guidance, ..Sampling::default() };
        let sampling = if lora {
            Sampling { lora_guidance: Some(self.guidance), ..base }
        } else {
            Sampling { text_guidance: self.guidance, ..base }
        };
        EditOptions::new(sampling, self.seed)
    }
}
