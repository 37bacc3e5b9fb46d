//! `loc-eval forward`: one component of a Hugging Face model folder on inputs from a
//! safetensors file, outputs to another. The parity interface other tools rely on:
//!
//! | component | inputs | outputs |
//! |---|---|---|
//! | `unet` | `sample`, `timestep` (int64), `encoder_hidden_states` | `sample` |
//! | `vae-encode` | `sample` (in `[-1, 1]`) | `mean` |
//! | `vae-decode` | `latents` | `sample` |
//! | `clip-text` | `input_ids` (int64) | `last_hidden_state`, `pooler_output` |
//! | `clip-text-projected` | `input_ids` (int64) | `text_embeds` |
//! | `clip-vision` | `pixel_values` | `image_embeds` |
//! | `dino` | `pixel_values` | `cls`, `last_hidden_state` |
//!
//! `--lora FILE [--lora-scale S]` applies a kohya or PEFT LoRA file to the UNet, as diffusers'
//! `load_lora_weights` and `set_adapters(adapter_weights=S)` do, so a file's effect can be
//! held against diffusers'.
//!
//! The CLIP components read a tower's own folder or a full CLIP folder. With `--reference`
//! (a parity fixture's `io.safetensors`), each output is compared with the reference's tensor
//! of the same meaning (`out_sample` for the UNet, `decoded` for the VAE decoder).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use burn::prelude::*;
use clap::ValueEnum;
use loc_core::clip::{ClipTextModel, ClipTextModelWithProjection, ClipVisionModelWithProjection};
use loc_core::device::cast_module;
use loc_core::lora::load_lora;
use loc_core::unet::UNet2DConditionModel;
use loc_core::vae::AutoencoderKL;
use loc_core::vit::ViTModel;
use loc_core::weights::{RawTensor, read_safetensors, write_safetensors};

use super::Env;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Component {
    Unet,
    VaeEncode,
    VaeDecode,
    ClipText,
    ClipTextProjected,
    ClipVision,
    Dino,
}

struct Inputs<'a> {
    file: &'a Path,
    tensors: BTreeMap<String, RawTensor>,
    device: Device,
}

impl Inputs<'_> {
    fn get(&self, name: &str) -> anyhow::Result<&RawTensor> {
        self.tensors.get(name).ok_or_else(|| anyhow!("{}: no input tensor `{name}`", self.file.display()))
    }

    fn float<const D: usize>(&self, name: &str) -> anyhow::Result<Tensor<D>> {
        let raw = self.get(name)?;
        let shape: [usize; D] = raw.shape.clone().try_into().map_err(|s: Vec<usize>| {
            anyhow!("{}: `{name}` has shape {s:?}, expected {D} dimensions", self.file.display())
        })?;
        Ok(Tensor::from_data(TensorData::new(raw.floats(), shape), &self.device))
    }

    fn ints(&self, name: &str) -> anyhow::Result<Tensor<2, Int>> {
        let raw = self.get(name)?;
        let values =
            raw.ints().ok_or_else(|| anyhow!("{}: `{name}` must be an integer tensor", self.file.display()))?;
        let [n, l]: [usize; 2] = raw.shape.clone().try_into().map_err(|s: Vec<usize>| {
            anyhow!("{}: `{name}` has shape {s:?}, expected [batch, length]", self.file.display())
        })?;
        Ok(Tensor::from_data(TensorData::new(values, [n, l]), &self.device))
    }
}

/// A named output: shape and values.
type Output = (String, Vec<usize>, Vec<f32>);

fn output<const D: usize>(name: &str, t: Tensor<D>) -> anyhow::Result<Output> {
    let shape = t.dims().to_vec();
    let values = t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| anyhow!("{name}: {e:?}"))?;
    Ok((name.to_string(), shape, values))
}

#[derive(clap::Args)]
pub struct ForwardArgs {
    #[arg(long, value_enum)]
    component: Component,
    /// The component's Hugging Face folder (config.json + safetensors).
    #[arg(long)]
    model_dir: PathBuf,
    #[arg(long)]
    inputs: PathBuf,
    #[arg(long)]
    output: PathBuf,
    /// A parity fixture's reference outputs: print each output's deviation and fail past
    /// `--tolerance` (relative to the reference's largest magnitude).
    #[arg(long)]
    reference: Option<PathBuf>,
    #[arg(long, default_value_t = 1e-3)]
    tolerance: f32,
    /// A kohya or PEFT LoRA file applied to the UNet (`--component unet` only).
    #[arg(long)]
    lora: Option<PathBuf>,
    /// The LoRA's weight (diffusers' `set_adapters(..., adapter_weights=S)`).
    #[arg(long, default_value_t = 1.0, requires = "lora")]
    lora_scale: f32,
}

pub fn run(args: ForwardArgs, env: &Env) -> anyhow::Result<()> {
    let ForwardArgs { component, model_dir, inputs, output, reference, tolerance, lora, lora_scale } = args;
    let lora = lora.as_deref().map(|file| (file, lora_scale));
    let outputs = run_component(component, &model_dir, &inputs, &output, lora, env)?;
    let Some(reference) = reference else { return Ok(()) };
    let mut worst = 0.0f32;
    for d in compare(component, &outputs, &reference)? {
        let relative = d.max_abs_diff / d.scale;
        worst = worst.max(relative);
        println!(
            "{} {component:?} {}: max abs diff {:.3e}, relative {relative:.3e}",
            model_dir.display(),
            d.name,
            d.max_abs_diff
        );
    }
    if worst > tolerance {
        bail!("{}: relative deviation {worst:.3e} > --tolerance {tolerance:.1e}", model_dir.display());
    }
    Ok(())
}

/// Runs `component` from `model_dir` on `inputs`, writing `output`; `lora` is a LoRA file
/// and its weight, for the UNet.
fn run_component(
    component: Component,
    model_dir: &Path,
    inputs: &Path,
    output_path: &Path,
    lora: Option<(&Path, f32)>,
    env: &Env,
) -> anyhow::Result<Vec<Output>> {
    let (device, precision) = (env.device.clone(), env.precision);
    if lora.is_some() && !matches!(component, Component::Unet) {
        bail!("--lora applies to the UNet only (--component unet), not {component:?}");
    }
    let tensors = read_safetensors(inputs)?;
    let inputs = Inputs { file: inputs, tensors, device: device.clone() };
    let outputs = match component {
        Component::Unet => {
            let unet = cast_module(UNet2DConditionModel::load(model_dir, &device)?, precision);
            let sample = inputs.float::<4>("sample")?;
            // A file holds one sample's LoRA: every input sample gets it.
            let lora = match lora {
                Some((file, scale)) => {
                    let set = load_lora(file, &unet.lora_targets(), &device)?.set;
                    Some(set.scaled(scale).repeat(sample.dims()[0]))
                }
                None => None,
            };
            let sample = unet.forward(
                sample,
                inputs.float::<1>("timestep")?,
                inputs.float::<3>("encoder_hidden_states")?,
                lora.as_ref(),
            );
            vec![output("sample", sample)?]
        }
        Component::VaeEncode => {
            let vae = cast_module(AutoencoderKL::load(model_dir, &device)?, precision);
            vec![output("mean", vae.encode(inputs.float::<4>("sample")?).mean)?]
        }
        Component::VaeDecode => {
            let vae = cast_module(AutoencoderKL::load(model_dir, &device)?, precision);
            vec![output("sample", vae.decode(inputs.float::<4>("latents")?))?]
        }
        Component::ClipText => {
            let clip = cast_module(ClipTextModel::load(model_dir, &device)?, precision);
            let out = clip.forward(inputs.ints("input_ids")?);
            vec![output("last_hidden_state", out.last_hidden_state)?, output("pooler_output", out.pooler_output)?]
        }
        Component::ClipTextProjected => {
            let clip = cast_module(ClipTextModelWithProjection::load(model_dir, &device)?, precision);
            vec![output("text_embeds", clip.forward(inputs.ints("input_ids")?))?]
        }
        Component::Dino => {
            let vit = cast_module(ViTModel::load(model_dir, &device)?, precision);
            let hidden = vit.forward(inputs.float::<4>("pixel_values")?);
            let [n, _, d] = hidden.dims();
            vec![output("cls", hidden.clone().narrow(1, 0, 1).reshape([n, d]))?, output("last_hidden_state", hidden)?]
        }
        Component::ClipVision => {
            let clip = cast_module(ClipVisionModelWithProjection::load(model_dir, &device)?, precision);
            vec![output("image_embeds", clip.forward(inputs.float::<4>("pixel_values")?).image_embeds)?]
        }
    };
    write_safetensors(output_path, &outputs).with_context(|| format!("writing {}", output_path.display()))?;
    Ok(outputs)
}

/// One output against its reference.
struct Deviation {
    name: String,
    max_abs_diff: f32,
    /// The reference's largest magnitude (at least 1): differences are relative to it.
    scale: f32,
}

/// Each of `outputs` against the tensor of the same meaning in `reference`.
fn compare(component: Component, outputs: &[Output], reference: &Path) -> anyhow::Result<Vec<Deviation>> {
    let mut tensors = read_safetensors(reference)?;
    outputs
        .iter()
        .map(|(name, shape, values)| {
            let wanted = match (component, name.as_str()) {
                (Component::Unet, "sample") => "out_sample",
                (Component::VaeDecode, "sample") => "decoded",
                (_, other) => other,
            };
            let expected = tensors
                .remove(wanted)
                .ok_or_else(|| anyhow!("{}: no `{wanted}` to compare `{name}` with", reference.display()))?;
            if &expected.shape != shape {
                bail!("{}: `{wanted}` has shape {:?}, the output {shape:?}", reference.display(), expected.shape);
            }
            let expected = expected.floats();
            let max_abs_diff = values.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            let scale = expected.iter().map(|v| v.abs()).fold(1.0, f32::max);
            Ok(Deviation { name: name.clone(), max_abs_diff, scale })
        })
        .collect()
}
