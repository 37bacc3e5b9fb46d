//! `loc-eval edit` and `loc-eval export-lora`: a trained checkpoint applied to a user's
//! before/after pair. Images of any size and colour type are read, stretched to the model
//! resolution, and the edited query is returned at its own size.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::prelude::*;
use clap::ValueEnum;
use image::imageops;
use loc_core::checkpoint::LocModel;
use loc_core::lora::{ExportOptions, LoraFormat, LoraSet, load_lora, save_lora};
use loc_core::pipeline::EditOptions;
use loc_data::pipeline::{image_tensor, read_image, tensor_image};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Kohya,
    Peft,
}

/// The image at `path`, its original size, and the model-resolution tensor in `[-1, 1]`.
fn model_input(path: &Path, resolution: u32, device: &Device) -> anyhow::Result<((u32, u32), Tensor<4>)> {
    let image = read_image(path)?;
    Ok((image.dimensions(), image_tensor(&image, resolution, device)))
}

/// `Δ = H(A, A')` for the pair at these paths, with strength and negation applied.
fn generate(
    model: &LocModel,
    before: &Path,
    after: &Path,
    strength: f32,
    negate: bool,
    device: &Device,
) -> anyhow::Result<LoraSet> {
    let resolution = model.manifest.resolution;
    let (_, a) = model_input(before, resolution, device)?;
    let (_, a_edited) = model_input(after, resolution, device)?;
    let lora = model.generate(a, a_edited).scaled(strength);
    Ok(if negate { lora.negate() } else { lora })
}

/// Where the change comes from.
pub enum Change {
    /// A before/after pair, through the hypernetwork.
    Pair(PathBuf, PathBuf),
    /// A stored LoRA file (kohya or PEFT).
    File(PathBuf),
}

pub struct EditArgs<'a> {
    pub change: Change,
    pub query: &'a Path,
    pub out: &'a Path,
    pub options: EditOptions,
    pub strength: f32,
    pub negate: bool,
    pub device: &'a Device,
}

/// Applies the pair's change to the query image and writes the result.
pub fn edit(model: &LocModel, args: EditArgs) -> anyhow::Result<()> {
    let device = args.device;
    let lora = match &args.change {
        Change::Pair(before, after) => generate(model, before, after, args.strength, args.negate, device)?,
        Change::File(file) => {
            let lora = load_lora(file, &model.hypernet.targets, device)?.set.scaled(args.strength);
            if args.negate { lora.negate() } else { lora }
        }
    };
    let ((width, height), query) = model_input(args.query, model.manifest.resolution, device)?;
    let pixels = tensor_image(model.edit(query, &lora, &args.options));
    let output = imageops::resize(&pixels, width, height, imageops::FilterType::CatmullRom);
    output.save(args.out).with_context(|| format!("writing {}", args.out.display()))
}

/// Writes the LoRA of the pair `(before, after)` as a kohya or PEFT file.
pub fn export_lora(
    model: &LocModel,
    (before, after): (&Path, &Path),
    format: Format,
    out: &Path,
    strength: f32,
    negate: bool,
    device: &Device,
) -> anyhow::Result<()> {
    let lora = generate(model, before, after, 1.0, false, device)?;
    let format = match format {
        Format::Kohya => LoraFormat::Kohya,
        Format::Peft => LoraFormat::Peft,
    };
    let options = ExportOptions { strength, negate, ..ExportOptions::new(format) };
    save_lora(out, &lora, &model.hypernet.targets, 0, &options)?;
    Ok(())
}
