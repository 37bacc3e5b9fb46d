//! `loc-eval export-lora`: the LoRA a checkpoint generates for a before/after pair, as a
//! kohya or PEFT file that diffusers and ComfyUI load.

use std::path::PathBuf;

use clap::ValueEnum;
use loc_core::lora::{ExportOptions, LoraFormat, save_lora};
use loc_data::pipeline::read_image;

use super::Env;
use crate::editing::pair_lora;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Kohya,
    Peft,
}

#[derive(clap::Args)]
pub struct ExportLoraArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long)]
    before: PathBuf,
    #[arg(long)]
    after: PathBuf,
    #[arg(long, value_enum)]
    format: Format,
    #[arg(long)]
    out: PathBuf,
    /// Multiplies the LoRA in the file.
    #[arg(long, default_value_t = 1.0)]
    strength: f32,
    /// Store the reverse change (-Δ).
    #[arg(long)]
    negate: bool,
}

pub fn run(args: ExportLoraArgs, env: &Env) -> anyhow::Result<()> {
    let model = env.load(&args.checkpoint)?;
    let lora = pair_lora(&model, read_image(&args.before)?, read_image(&args.after)?, &env.device);
    let format = match args.format {
        Format::Kohya => LoraFormat::Kohya,
        Format::Peft => LoraFormat::Peft,
    };
    let options = ExportOptions { strength: args.strength, negate: args.negate, ..ExportOptions::new(format) };
    save_lora(&args.out, &lora, &model.hypernet.targets, 0, &options)?;
    Ok(())
}
