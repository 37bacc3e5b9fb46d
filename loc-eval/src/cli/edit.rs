//! `loc-eval edit`: a trained checkpoint's change, shown by a before/after pair or stored in a
//! LoRA file, applied to a query image. Images of any size and colour type are read,
//! stretched to the model resolution, and the edited query is written at its own size.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::prelude::*;
use image::imageops;
use loc_core::checkpoint::LocModel;
use loc_core::lora::{LoraSet, load_lora};
use loc_data::pipeline::{image_tensor, read_image, tensor_image};

use super::{Env, SamplingArgs};

#[derive(clap::Args)]
pub struct EditArgs {
    /// A LoC checkpoint folder (loc_checkpoint.json + hypernet.safetensors).
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long, required_unless_present = "lora", requires = "after")]
    before: Option<PathBuf>,
    #[arg(long, requires = "before")]
    after: Option<PathBuf>,
    /// A kohya or PEFT LoRA file (e.g. from export-lora) instead of a pair.
    #[arg(long, conflicts_with_all = ["before", "after"])]
    lora: Option<PathBuf>,
    #[arg(long)]
    query: PathBuf,
    /// The edited query, at the query's size (format from the extension).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Multiplies the generated LoRA.
    #[arg(long, default_value_t = 1.0)]
    strength: f32,
    /// Apply the reverse change (-Δ).
    #[arg(long)]
    negate: bool,
}

pub fn run(args: EditArgs, env: &Env) -> anyhow::Result<()> {
    let (model, device) = (env.load(&args.checkpoint)?, &env.device);
    let lora = match (&args.lora, &args.before, &args.after) {
        (Some(file), _, _) => load_lora(file, &model.hypernet.targets, device)?.set,
        (None, Some(before), Some(after)) => pair_lora(&model, before, after, device)?,
        _ => unreachable!("clap requires a pair or a LoRA file"),
    };
    let lora = lora.scaled(args.strength);
    let lora = if args.negate { lora.negate() } else { lora };
    let ((width, height), query) = model_input(&args.query, model.manifest.resolution, device)?;
    let pixels = tensor_image(model.edit(query, &lora, &args.sampling.options(true)));
    let output = imageops::resize(&pixels, width, height, imageops::FilterType::CatmullRom);
    output.save(&args.out).with_context(|| format!("writing {}", args.out.display()))
}

/// `Δ = H(A, A')` for the pair at these paths.
pub(super) fn pair_lora(model: &LocModel, before: &Path, after: &Path, device: &Device) -> anyhow::Result<LoraSet> {
    let resolution = model.manifest.resolution;
    let (_, a) = model_input(before, resolution, device)?;
    let (_, a_edited) = model_input(after, resolution, device)?;
    Ok(model.generate(a, a_edited))
}

/// The image at `path`, its original size, and the model-resolution tensor in `[-1, 1]`.
fn model_input(path: &Path, resolution: u32, device: &Device) -> anyhow::Result<((u32, u32), Tensor<4>)> {
    let image = read_image(path)?;
    Ok((image.dimensions(), image_tensor(&image, resolution, device)))
}
