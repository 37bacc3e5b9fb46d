//! The InstructPix2Pix edit (diffusers `StableDiffusionInstructPix2PixPipeline`): the image
//! becomes condition latents (VAE mode, unscaled), DDIM denoises with three-way
//! classifier-free guidance, the VAE decodes. An optional LoRA set applies to the UNet in
//! every guidance branch.
//!
//! Follows diffusers
//! `src/diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion_instruct_pix2pix.py`,
//! `StableDiffusionInstructPix2PixPipeline.__call__`.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::Distribution;
use serde::{Deserialize, Serialize};

use crate::clip::{ClipTextConfig, ClipTextModel, ClipTokenizer};
use crate::device::{Precision, cast_module};
use crate::error::ModelError;
use crate::lora::LoraSet;
use crate::schedule::{Ddim, SchedulerConfig};
use crate::single_file::read_single_file;
use crate::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use crate::vae::{AutoencoderKL, AutoencoderKLConfig};
use crate::weights::weights_file;

/// How an edit samples: DDIM steps and the guidance scales; defaults are InstructPix2Pix's.
/// A run's `[eval]` section, `loc-eval`'s flags and the trainer's sample grids all hold one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sampling {
    pub steps: usize,
    /// `s_T`: how strongly the text instruction is followed.
    pub text_guidance: f32,
    /// `s_I`: how strongly the output stays close to the input image.
    pub image_guidance: f32,
    /// Instruction guidance for a LoRA (LoC): when set, the LoRA applies only in the first
    /// branch, and this scale contrasts "with LoRA" against "without LoRA" in place of the
    /// text scale. When `None`, the LoRA applies in every branch.
    pub lora_guidance: Option<f32>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self { steps: 20, text_guidance: 7.5, image_guidance: 1.5, lora_guidance: None }
    }
}

/// One edit's settings: how it samples, and the seed of its initial noise.
#[derive(Clone, Debug, Default)]
pub struct EditOptions {
    pub sampling: Sampling,
    pub seed: u64,
}

impl EditOptions {
    /// `sampling` with the initial noise from `seed`.
    pub fn new(sampling: Sampling, seed: u64) -> Self {
        Self { sampling, seed }
    }
}

/// A frozen InstructPix2Pix: UNet (8 input channels), VAE, CLIP text encoder and tokenizer,
/// and the scheduler settings. Without a VAE the editor works in pixel space (UNet with 6
/// input and 3 output channels): small editors, like the tiny world's, need no autoencoder.
#[derive(Clone)]
pub struct InstructPix2Pix {
    pub unet: UNet2DConditionModel,
    pub vae: Option<AutoencoderKL>,
    pub text_encoder: ClipTextModel,
    pub tokenizer: ClipTokenizer,
    pub scheduler: SchedulerConfig,
}

impl InstructPix2Pix {
    /// A diffusers folder: `unet/`, `vae/` (absent for a pixel-space editor), `text_encoder/`,
    /// `tokenizer/`, `scheduler/`.
    ///
    /// The folder may hold, instead of the models' weights files, one original single-file
    /// checkpoint (`*.safetensors` at its top, e.g. `instruct-pix2pix-00-22000.safetensors`)
    /// beside the configs, tokenizer and scheduler: see [`load_single_file`](Self::load_single_file).
    /// Weights files may be the fp16 variants (`diffusion_pytorch_model.fp16.safetensors`).
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        if !weights_file(&dir.join("unet"), "diffusion_pytorch_model").exists()
            && let Some(file) = single_file_in(dir)?
        {
            return Self::load_single_file(&file, dir, device);
        }
        let vae_dir = dir.join("vae");
        Ok(Self {
            unet: UNet2DConditionModel::load(&dir.join("unet"), device)?,
            vae: if vae_dir.exists() { Some(AutoencoderKL::load(&vae_dir, device)?) } else { None },
            text_encoder: ClipTextModel::load(&dir.join("text_encoder"), device)?,
            tokenizer: ClipTokenizer::load(&dir.join("tokenizer"))?,
            scheduler: SchedulerConfig::load(&dir.join("scheduler").join("scheduler_config.json"))?,
        })
    }

    /// An original single-file checkpoint (LDM key names; see [`crate::single_file`]), with
    /// the configs, tokenizer and scheduler of the diffusers folder `configs` (its weights,
    /// if any, are not read), as diffusers' `from_single_file(file, config=configs)`.
    pub fn load_single_file(file: &Path, configs: &Path, device: &Device) -> Result<Self, ModelError> {
        let unet_config = UNet2DConditionConfig::load(&configs.join("unet/config.json"))?;
        let vae_config = AutoencoderKLConfig::load(&configs.join("vae/config.json"))?;
        let text_config = ClipTextConfig::load(&configs.join("text_encoder/config.json"))?;
        let weights = read_single_file(file, &unet_config, &vae_config)?;
        Ok(Self {
            unet: UNet2DConditionModel::load_weights(&unet_config, weights.unet, device)?,
            vae: Some(AutoencoderKL::load_weights(&vae_config, weights.vae, device)?),
            text_encoder: ClipTextModel::load_weights(&text_config, weights.text_encoder, device)?,
            tokenizer: ClipTokenizer::load(&configs.join("tokenizer"))?,
            scheduler: SchedulerConfig::load(&configs.join("scheduler").join("scheduler_config.json"))?,
        })
    }

    /// The UNet, VAE and text encoder stored and run in `precision` (inputs and outputs stay
    /// f32). For inference or a frozen editor; a trained module should stay f32.
    pub fn with_precision(self, precision: Precision) -> Self {
        Self {
            unet: cast_module(self.unet, precision),
            vae: self.vae.map(|vae| cast_module(vae, precision)),
            text_encoder: cast_module(self.text_encoder, precision),
            ..self
        }
    }

    /// A copy on `device` (another GPU of a data-parallel run): every model forked there as it
    /// is, frozen or trainable, in its precision.
    pub fn fork(&self, device: &Device) -> Self {
        Self {
            unet: self.unet.clone().fork(device),
            vae: self.vae.clone().map(|vae| vae.fork(device)),
            text_encoder: self.text_encoder.clone().fork(device),
            tokenizer: self.tokenizer.clone(),
            scheduler: self.scheduler.clone(),
        }
    }

    /// A copy for inference on the plain (non-autodiff) device, gradients off: sampling with
    /// a model being trained must not build a backward graph.
    pub fn valid(&self) -> Self {
        Self {
            unet: self.unet.valid(),
            vae: self.vae.as_ref().map(Module::valid),
            text_encoder: self.text_encoder.valid(),
            tokenizer: self.tokenizer.clone(),
            scheduler: self.scheduler.clone(),
        }
    }

    /// `[N, 77, D]` text states for `prompts` (the empty prompt is the unconditional one).
    pub fn encode_prompts(&self, prompts: &[&str], device: &Device) -> Tensor<3> {
        encode_prompts(&self.text_encoder, &self.tokenizer, prompts, device)
    }

    /// Edits `images` (`[N, 3, H, W]` in `[-1, 1]`) by `prompts`, noise drawn from the seed.
    pub fn edit_with_prompts(
        &self,
        images: Tensor<4>,
        prompts: &[&str],
        lora: Option<&LoraSet>,
        options: &EditOptions,
    ) -> Tensor<4> {
        let device = images.device();
        let cond = self.encode_prompts(prompts, &device);
        let uncond = self.encode_prompts(&vec![""; prompts.len()], &device);
        self.edit_with_states(images, cond, uncond, lora, options)
    }

    /// Edits `images` with given text states, the initial noise drawn from `options.seed` on
    /// the CPU (seeding its generator) and moved to the images' device: a seed gives the same
    /// noise on every backend, so an edit on a GPU can be held to the CPU's.
    pub fn edit_with_states(
        &self,
        images: Tensor<4>,
        cond: Tensor<3>,
        uncond: Tensor<3>,
        lora: Option<&LoraSet>,
        options: &EditOptions,
    ) -> Tensor<4> {
        let device = images.device();
        let host = Device::flex();
        host.seed(options.seed);
        let noise =
            Tensor::random(latent_shape(self.vae.as_ref(), images.dims()), Distribution::Normal(0.0, 1.0), &host)
                .to_device(&device);
        edit(&self.unet, self.vae.as_ref(), &self.scheduler, images, cond, uncond, noise, lora, options)
    }
}

/// The edit loop with everything given: `cond`/`uncond` text states `[N, L, D]`, the initial
/// `noise` `[N, z, h, w]`. Returns images in `[-1, 1]`.
///
/// Guidance: `ε = ε(∅) + s₁ (ε₁ - ε(img)) + s_I (ε(img) - ε(∅))`, where branch 1 is
/// "text + image" with `s₁ = s_T`, or, with `lora_guidance`, "LoRA + image" with `s₁ = s_L`.
#[allow(clippy::too_many_arguments)]
pub fn edit(
    unet: &UNet2DConditionModel,
    vae: Option<&AutoencoderKL>,
    scheduler: &SchedulerConfig,
    images: Tensor<4>,
    cond: Tensor<3>,
    uncond: Tensor<3>,
    noise: Tensor<4>,
    lora: Option<&LoraSet>,
    options: &EditOptions,
) -> Tensor<4> {
    let n = images.dims()[0];
    let sampling = &options.sampling;
    let ddim = Ddim::new(scheduler, sampling.steps);
    // Branches: (text + image), (image only), (neither).
    let image_latents = condition_latents(vae, images);
    let image_latents = Tensor::cat(vec![image_latents.clone(), image_latents.clone(), image_latents.zeros_like()], 0);
    let context = Tensor::cat(vec![cond, uncond.clone(), uncond], 0);
    let (first_scale, lora) = match (sampling.lora_guidance, lora) {
        (Some(scale), Some(set)) => {
            let only_first: Vec<f32> = (0..3 * n).map(|i| if i < n { 1.0 } else { 0.0 }).collect();
            let weights = Tensor::<1>::from_data(TensorData::new(only_first, [3 * n]), &image_latents.device());
            (scale, Some(set.clone().repeat(3).scaled_per_sample(weights)))
        }
        (_, lora) => (sampling.text_guidance, lora.map(|set| set.clone().repeat(3))),
    };
    let mut latents = noise;
    for &t in &ddim.timesteps {
        let input = Tensor::cat(vec![Tensor::cat(vec![latents.clone(); 3], 0), image_latents.clone()], 1);
        let timesteps = Tensor::<1>::full([3 * n], t as f32, &latents.device());
        let out = unet.forward(input, timesteps, context.clone(), lora.as_ref());
        let (full, image_only, none) =
            (out.clone().narrow(0, 0, n), out.clone().narrow(0, n, n), out.narrow(0, 2 * n, n));
        let guided = none.clone()
            + (full - image_only.clone()).mul_scalar(first_scale)
            + (image_only - none).mul_scalar(sampling.image_guidance);
        latents = ddim.step(guided, t, latents);
    }
    decode_latents(vae, latents)
}

/// `[N, L, D]` text states (the last hidden state) for `prompts`.
pub fn encode_prompts(
    text_encoder: &ClipTextModel,
    tokenizer: &ClipTokenizer,
    prompts: &[&str],
    device: &Device,
) -> Tensor<3> {
    let ids: Vec<i64> = prompts.iter().flat_map(|p| tokenizer.encode(p)).map(i64::from).collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [prompts.len(), tokenizer.max_length]), device);
    text_encoder.forward(ids).last_hidden_state
}

/// How many pixels make one latent along each side: the VAE's downsampling factor (8 for
/// Stable Diffusion), 1 in pixel space. Image sides must be multiples of it.
pub fn spatial_factor(vae: Option<&AutoencoderKL>) -> usize {
    vae.map_or(1, |vae| 1 << (vae.config.block_out_channels.len() - 1))
}

/// The shape of the latents for images of shape `[n, 3, h, w]`.
pub fn latent_shape(vae: Option<&AutoencoderKL>, [n, c, h, w]: [usize; 4]) -> [usize; 4] {
    let factor = spatial_factor(vae);
    let channels = vae.map_or(c, |vae| vae.config.latent_channels);
    [n, channels, h / factor, w / factor]
}

/// The spatial condition: the VAE's mode, unscaled (InstructPix2Pix), or the pixels.
pub fn condition_latents(vae: Option<&AutoencoderKL>, images: Tensor<4>) -> Tensor<4> {
    match vae {
        Some(vae) => vae.encode(images).mode(),
        None => images,
    }
}

/// What the UNet denoises: a VAE sample scaled by the scaling factor (`noise` draws the
/// sample), or the pixels.
pub fn target_latents(vae: Option<&AutoencoderKL>, images: Tensor<4>, noise: Tensor<4>) -> Tensor<4> {
    match vae {
        Some(vae) => vae.encode(images).sample(noise).mul_scalar(vae.scaling_factor() as f32),
        None => images,
    }
}

/// Latents back to images in `[-1, 1]` (pixel space: the latents themselves).
pub fn decode_latents(vae: Option<&AutoencoderKL>, latents: Tensor<4>) -> Tensor<4> {
    match vae {
        Some(vae) => vae.decode(latents.div_scalar(vae.scaling_factor() as f32)),
        None => latents,
    }
}

/// The one `*.safetensors` file at the top of `dir`, if there is exactly one.
fn single_file_in(dir: &Path) -> Result<Option<PathBuf>, ModelError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ModelError::Io { path: dir.to_path_buf(), source })?;
    let files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    Ok(if files.len() == 1 { files.into_iter().next() } else { None })
}
