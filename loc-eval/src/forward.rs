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
//! The CLIP components read a tower's own folder or a full CLIP folder. With `--reference`
//! (a parity fixture's `io.safetensors`), each output is compared with the reference's tensor
//! of the same meaning (`out_sample` for the UNet, `decoded` for the VAE decoder).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use burn::prelude::*;
use clap::ValueEnum;
use loc_core::clip::{ClipTextModel, ClipTextModelWithProjection, ClipVisionModelWithProjection};
use loc_core::device::{Precision, cast_module};
use loc_core::unet::UNet2DConditionModel;
use loc_core::vae::AutoencoderKL;
use loc_core::vit::ViTModel;
use loc_core::weights::{RawTensor, read_safetensors, write_safetensors};

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
pub type Output = (String, Vec<usize>, Vec<f32>);

fn output<const D: usize>(name: &str, t: Tensor<D>) -> anyhow::Result<Output> {
    let shape = t.dims().to_vec();
    let values = t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| anyhow!("{name}: {e:?}"))?;
    Ok((name.to_string(), shape, values))
}

/// Runs `component` from `model_dir` on `inputs`, writing `output`.
pub fn run(
    component: Component,
    model_dir: &Path,
    inputs: &Path,
    output_path: &Path,
    device: &Device,
    precision: Precision,
) -> anyhow::Result<Vec<Output>> {
    let device = device.clone();
    let tensors = read_safetensors(inputs)?;
    let inputs = Inputs { file: inputs, tensors, device: device.clone() };
    let outputs = match component {
        Component::Unet => {
            let unet = cast_module(UNet2DConditionModel::load(model_dir, &device)?, precision);
            let sample = unet.forward(
                inputs.float::<4>("sample")?,
                inputs.float::<1>("timestep")?,
                inputs.float::<3>("encoder_hidden_states")?,
                None,
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
pub struct Deviation {
    pub name: String,
    pub max_abs_diff: f32,
    /// The reference's largest magnitude (at least 1): differences are relative to it.
    pub scale: f32,
}

/// Each of `outputs` against the tensor of the same meaning in `reference`.
pub fn compare(component: Component, outputs: &[Output], reference: &Path) -> anyhow::Result<Vec<Deviation>> {
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
