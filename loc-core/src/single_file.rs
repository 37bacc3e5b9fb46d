//! The original single-file checkpoints (e.g. `instruct-pix2pix-00-22000.safetensors`): one
//! file with LDM key names, `model.diffusion_model.*` (UNet), `first_stage_model.*` (VAE)
//! and `cond_stage_model.transformer.*` (CLIP text encoder), read into the diffusers models
//! as diffusers' `from_single_file` does. The configs, tokenizer and scheduler come from a
//! diffusers-layout folder, as `from_single_file(..., config=FOLDER)` takes them.
//!
//! Follows diffusers `src/diffusers/loaders/single_file_utils.py`
//! (`convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint`), for any number of levels
//! and layers per block, the inverse of `scripts/convert_diffusers_to_original_stable_diffusion.py`.

use std::path::Path;

use safetensors::SafeTensors;
use safetensors::tensor::TensorView;

use crate::error::ModelError;
use crate::unet::UNet2DConditionConfig;
use crate::vae::AutoencoderKLConfig;
use crate::weights::Weights;

pub const UNET_PREFIX: &str = "model.diffusion_model.";
pub const VAE_PREFIX: &str = "first_stage_model.";
pub const TEXT_PREFIX: &str = "cond_stage_model.transformer.";

/// A key prefix in the original layout and its diffusers name.
type Rename = (String, String);

/// The UNet's block prefixes (`input_blocks.4.0.` -> `down_blocks.1.resnets.0.`, ...) for
/// `config`'s levels, layers per block and attention blocks; top-level layers as well.
fn unet_renames(config: &UNet2DConditionConfig) -> Vec<Rename> {
    let (levels, layers) = (config.block_out_channels.len(), config.layers_per_block);
    let mut renames: Vec<Rename> = [
        ("time_embed.0.", "time_embedding.linear_1."),
        ("time_embed.2.", "time_embedding.linear_2."),
        ("input_blocks.0.0.", "conv_in."),
        ("out.0.", "conv_norm_out."),
        ("out.2.", "conv_out."),
        ("middle_block.0.", "mid_block.resnets.0."),
        ("middle_block.1.", "mid_block.attentions.0."),
        ("middle_block.2.", "mid_block.resnets.1."),
    ]
    .map(|(ldm, diffusers)| (ldm.to_string(), diffusers.to_string()))
    .to_vec();
    for level in 0..levels {
        let attends = config.down_block_types[level].starts_with("CrossAttn");
        for j in 0..layers {
            let block = (layers + 1) * level + j + 1;
            renames.push((format!("input_blocks.{block}.0."), format!("down_blocks.{level}.resnets.{j}.")));
            if attends {
                renames.push((format!("input_blocks.{block}.1."), format!("down_blocks.{level}.attentions.{j}.")));
            }
        }
        if level + 1 < levels {
            let block = (layers + 1) * (level + 1);
            renames.push((format!("input_blocks.{block}.0.op."), format!("down_blocks.{level}.downsamplers.0.conv.")));
        }
        let attends = config.up_block_types[level].starts_with("CrossAttn");
        for j in 0..=layers {
            let block = (layers + 1) * level + j;
            renames.push((format!("output_blocks.{block}.0."), format!("up_blocks.{level}.resnets.{j}.")));
            if attends {
                renames.push((format!("output_blocks.{block}.1."), format!("up_blocks.{level}.attentions.{j}.")));
            }
        }
        if level + 1 < levels {
            let (block, slot) = ((layers + 1) * level + layers, if attends { 2 } else { 1 });
            renames.push((format!("output_blocks.{block}.{slot}."), format!("up_blocks.{level}.upsamplers.0.")));
        }
    }
    renames
}

/// Inside a UNet resnet.
const UNET_RESNET: [(&str, &str); 6] = [
    ("in_layers.0.", "norm1."),
    ("in_layers.2.", "conv1."),
    ("emb_layers.1.", "time_emb_proj."),
    ("out_layers.0.", "norm2."),
    ("out_layers.3.", "conv2."),
    ("skip_connection.", "conv_shortcut."),
];

/// The VAE's block prefixes: the decoder's levels count the other way in the original layout.
fn vae_renames(config: &AutoencoderKLConfig) -> Vec<Rename> {
    let (levels, layers) = (config.block_out_channels.len(), config.layers_per_block);
    let mut renames = Vec::new();
    for side in ["encoder", "decoder"] {
        renames.push((format!("{side}.norm_out."), format!("{side}.conv_norm_out.")));
        renames.push((format!("{side}.mid.block_1."), format!("{side}.mid_block.resnets.0.")));
        renames.push((format!("{side}.mid.block_2."), format!("{side}.mid_block.resnets.1.")));
        renames.push((format!("{side}.mid.attn_1."), format!("{side}.mid_block.attentions.0.")));
    }
    for level in 0..levels {
        for j in 0..layers {
            renames.push((
                format!("encoder.down.{level}.block.{j}."),
                format!("encoder.down_blocks.{level}.resnets.{j}."),
            ));
        }
        let up = levels - 1 - level;
        for j in 0..=layers {
            renames.push((format!("decoder.up.{up}.block.{j}."), format!("decoder.up_blocks.{level}.resnets.{j}.")));
        }
        if level + 1 < levels {
            renames.push((
                format!("encoder.down.{level}.downsample."),
                format!("encoder.down_blocks.{level}.downsamplers.0."),
            ));
            renames.push((format!("decoder.up.{up}.upsample."), format!("decoder.up_blocks.{level}.upsamplers.0.")));
        }
    }
    renames
}

/// Inside a VAE resnet, and inside its mid-block attention (whose 1x1 convolutions become
/// linear layers).
const VAE_RESNET: [(&str, &str); 1] = [("nin_shortcut.", "conv_shortcut.")];
const VAE_ATTENTION: [(&str, &str); 5] =
    [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0.")];

/// `key` (the part after the component's prefix) in diffusers' names: the longest block
/// prefix that matches, then the layer names inside the block.
fn rename(key: &str, renames: &[Rename], inner: &[(&str, &str)]) -> String {
    let Some((ldm, diffusers)) =
        renames.iter().filter(|(ldm, _)| key.starts_with(ldm.as_str())).max_by_key(|(l, _)| l.len())
    else {
        return key.to_string();
    };
    let rest = &key[ldm.len()..];
    let rest = inner.iter().find_map(|(from, to)| rest.strip_prefix(from).map(|r| format!("{to}{r}")));
    format!("{diffusers}{}", rest.as_deref().unwrap_or(&key[ldm.len()..]))
}

/// One component of the file (`prefix`), renamed, as safetensors bytes for its loader.
fn component(
    file: &SafeTensors,
    path: &Path,
    prefix: &str,
    name: impl Fn(&str) -> String,
) -> Result<Weights, ModelError> {
    let mut views: Vec<(String, TensorView)> = Vec::new();
    for (key, view) in file.iter() {
        let Some(local) = key.strip_prefix(prefix) else { continue };
        let renamed = name(local);
        // The VAE attention's 1x1 convolutions, `[C, C, 1, 1]`, are diffusers' linear layers.
        let view = if renamed.contains("mid_block.attentions.0.to_") && view.shape().len() == 4 {
            let shape = view.shape()[..2].to_vec();
            TensorView::new(view.dtype(), shape, view.data()).map_err(|e| file_error(path, e))?
        } else {
            view
        };
        views.push((renamed, view));
    }
    if views.is_empty() {
        return Err(ModelError::WeightsFile {
            path: path.to_path_buf(),
            problem: format!("no tensor starts with `{prefix}`"),
        });
    }
    let bytes = safetensors::serialize(views, None).map_err(|e| file_error(path, e))?;
    Ok(Weights::in_memory(bytes, path))
}

fn file_error(path: &Path, error: impl std::fmt::Display) -> ModelError {
    ModelError::WeightsFile { path: path.to_path_buf(), problem: error.to_string() }
}

/// The three models' weights of a single-file checkpoint, in diffusers' names.
pub struct SingleFile {
    pub unet: Weights,
    pub vae: Weights,
    pub text_encoder: Weights,
}

/// Reads `path` and splits it into the UNet's, VAE's and text encoder's weights.
pub fn read_single_file(
    path: &Path,
    unet: &UNet2DConditionConfig,
    vae: &AutoencoderKLConfig,
) -> Result<SingleFile, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| file_error(path, e))?;
    let (unet_renames, vae_renames) = (unet_renames(unet), vae_renames(vae));
    Ok(SingleFile {
        unet: component(&file, path, UNET_PREFIX, |k| rename(k, &unet_renames, &UNET_RESNET))?,
        vae: component(&file, path, VAE_PREFIX, |k| {
            let inner: &[(&str, &str)] = if k.contains(".mid.attn_1.") { &VAE_ATTENTION } else { &VAE_RESNET };
            rename(k, &vae_renames, inner)
        })?,
        text_encoder: component(&file, path, TEXT_PREFIX, str::to_string)?,
    })
}
