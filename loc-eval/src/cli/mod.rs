//! `loc-eval`'s command line: its commands, one module each, and the flags several of them
//! share. The `loc-eval` binary and the `loc` multi-call binary both run [`run`].

pub mod claims;
pub mod edit;
pub mod export_lora;
pub mod forward;
pub mod generate_magicbrush;
pub mod magicbrush;
pub mod quads;
pub mod serve;

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::prelude::*;
use clap::{Parser, Subcommand};
use loc_core::checkpoint::LocModel;
use loc_core::device::{Precision, describe, parse_device};
use loc_core::pipeline::{EditOptions, Sampling};

use crate::metrics::embedding::{MetricModels, MetricPaths};
use crate::serve::EditDefaults;

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

    /// The settings as `serve`'s page starts from them.
    fn defaults(&self) -> EditDefaults {
        EditDefaults {
            steps: self.steps,
            guidance: self.guidance,
            image_guidance: self.image_guidance,
            seed: self.seed,
        }
    }
}

/// `loc-eval`'s command line.
#[derive(Parser)]
#[command(version, about = "Evaluate and use LoRA of Change models")]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// Where the models run: cpu, cuda, cuda:N, wgpu, vulkan:N.
    #[arg(long, global = true, default_value = "cpu")]
    device: String,
    /// The frozen models' dtype: f32, bf16, f16 (`H` and the metric models stay f32).
    #[arg(long, global = true, default_value = "f32")]
    precision: Precision,
}

#[derive(Subcommand)]
enum Command {
    /// Run one model component on inputs from a safetensors file (parity with diffusers /
    /// transformers): unet, vae-encode, vae-decode, clip-text, clip-text-projected,
    /// clip-vision, dino.
    Forward(forward::ForwardArgs),
    /// Score generated MagicBrush edits against the ground truth (official layout and
    /// formulas): L1, L2, PSNR, SSIM, and CLIP-I / CLIP-T / DINO when their models are given.
    Magicbrush(magicbrush::MagicbrushArgs),
    /// Edit the MagicBrush test split and write the files the `magicbrush` command reads:
    /// the editor with each turn's instruction (`--mode text`), or LoC with a visual
    /// instruction per turn (`--mode pair`).
    GenerateMagicbrush(generate_magicbrush::GenerateArgs),
    /// Evaluate a LoC checkpoint on quads (A, A', B, B'): LoC against do-nothing, copy, and
    /// the editor with the null and the true instruction; pixel metrics, leakage, and CLIP-I /
    /// DINO / Visual CLIP when their models are given.
    Quads(quads::QuadsArgs),
    /// The paper's smaller claims on the procedural world's held-out split: one LoRA reused
    /// on many queries, +Δ then -Δ, and two LoRAs composed (`claims.json`, `claims.md`).
    Claims(claims::ClaimsArgs),
    /// Apply the change shown by a before/after pair (or stored in a LoRA file) to a query image.
    Edit(edit::EditArgs),
    /// Write the LoRA generated for a before/after pair (kohya or PEFT safetensors).
    ExportLora(export_lora::ExportLoraArgs),
    /// A local web page to try a checkpoint: drop A, A' and B, move a strength slider,
    /// download the edit and the LoRA.
    Serve(serve::ServeArgs),
}

/// Runs the command `args` name.
pub fn run(args: Args) -> anyhow::Result<()> {
    let device = parse_device(&args.device).with_context(|| format!("--device {}", args.device))?;
    args.precision.check(&device)?;
    if device != Device::flex() {
        eprintln!("device: {}", describe(&device));
    }
    let env = Env { device, precision: args.precision };
    match args.command {
        Command::Forward(args) => forward::run(args, &env),
        Command::Magicbrush(args) => magicbrush::run(args, &env),
        Command::GenerateMagicbrush(args) => generate_magicbrush::run(args, &env),
        Command::Quads(args) => quads::run(args, &env),
        Command::Claims(args) => claims::run(args, &env),
        Command::Edit(args) => edit::run(args, &env),
        Command::ExportLora(args) => export_lora::run(args, &env),
        Command::Serve(args) => serve::run(args, &env),
    }
}
