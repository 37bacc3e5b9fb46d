//! One hypernetwork training step of LoRA Reverse, timed: `H` generates a LoRA per pair, the
//! frozen UNet runs the forward (`+Δ`) and reverse (`-Δ`) terms as one batch of `2N`, the loss
//! backpropagates into `H`, AdamW updates it. The image encoder and VAE are left out (frozen,
//! one forward each): `H` reads random pooled features and the UNet random latents.
//!
//! Defaults: the tiny world's UNet, 16 pairs at 16x16. `--sd15`: SD-1.5 InstructPix2Pix, one
//! pair at 32x32 latents (a 256x256 image; ~10 GB of memory on the CPU). Options: `--device
//! cuda`, `--precision bf16` (the frozen models' dtype), `--pairs 8`, `--side 32` (latent side),
//! `--gradient-checkpointing`, `--encoders` (the step also runs the frozen image encoder on
//! `A, A'` and the VAE on the `4N` condition and target images, as a step without `[data]
//! cache` does: SD-1.5's VAE and CLIP ViT-L/14, or the tiny world's vision tower in pixel
//! space; the ratio to the plain step is the cache's speed-up).

use std::time::Instant;

use super::peak_rss_gib;
use crate::config::OptimConfig;
use crate::models::{tiny_unet_config, tiny_vision_config};
use crate::objective::denoising_loss;
use crate::optim::AdamW;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Distribution;
use loc_core::clip::{ClipVisionConfig, ClipVisionModelWithProjection};
use loc_core::device::cast_module;
use loc_core::hypernet::{DEFAULT_TARGET_SUFFIXES, HypernetShape, PairFeatures, image_features, select_targets};
use loc_core::lora::LoraSet;
use loc_core::schedule::{NoiseSchedule, SchedulerConfig};
use loc_core::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use loc_core::vae::{AutoencoderKL, AutoencoderKLConfig};

/// The step's settings (`loc bench step`, `cargo bench -p loc-train --bench hypernet_step --`).
#[derive(clap::Args)]
pub struct StepArgs {
    /// SD-1.5 (at 512 px for the edit) instead of the tiny models (64 px), the device, the dtype.
    #[command(flatten)]
    setting: super::Setting,
    /// Pairs per step (default: 1 for SD-1.5, 16 for the tiny world).
    #[arg(long)]
    pairs: Option<usize>,
    /// Latent side (default: 32 for SD-1.5, 16 for the tiny world).
    #[arg(long)]
    side: Option<usize>,
    #[arg(long)]
    gradient_checkpointing: bool,
    #[arg(long)]
    encoders: bool,
}

/// CLIP ViT-L/14's vision tower (`openai/clip-vit-large-patch14`), the paper's image encoder.
fn vit_l14() -> ClipVisionConfig {
    serde_json::from_value(serde_json::json!({
        "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
        "image_size": 224, "patch_size": 14, "projection_dim": 768
    }))
    .expect("a valid vision config")
}

/// Times the step and prints one Markdown table.
pub fn run(args: &StepArgs) -> anyhow::Result<()> {
    let (name, unet_config, pairs, side, features, width, depth) = if args.setting.sd15 {
        ("SD-1.5 InstructPix2Pix", UNet2DConditionConfig::sd15_instruct_pix2pix(), 1, 32, 1024, 256, 6)
    } else {
        ("tiny world", tiny_unet_config(), 16, 16, 64, 64, 3)
    };
    let (pairs, side) = (args.pairs.unwrap_or(pairs), args.side.unwrap_or(side));
    let device = args.setting.device()?.autodiff();
    let device = if args.gradient_checkpointing { device.gradient_checkpointing() } else { device };
    let unet = cast_module(UNet2DConditionModel::new(&unet_config, &device).no_grad(), args.setting.precision);
    let targets = select_targets(&unet.lora_targets(), &DEFAULT_TARGET_SUFFIXES);
    let mut hypernet = HypernetShape { width, depth, ..Default::default() }.config(features).init(&targets, &device);
    let schedule = NoiseSchedule::new(&SchedulerConfig::sd15());
    let mut optim = AdamW::new(&OptimConfig::default());
    let latent = unet_config.out_channels;
    let context = Tensor::<3>::zeros([2 * pairs, 8, unet_config.cross_attention_dim], &device);
    // The frozen encoders, built only when the step runs them.
    let encoders = args.encoders.then(|| {
        let (vae, vision) = if args.setting.sd15 {
            (Some(AutoencoderKLConfig::sd15()), vit_l14())
        } else {
            (None, tiny_vision_config(side))
        };
        let vae = vae.map(|c| cast_module(AutoencoderKL::new(&c, &device).no_grad(), args.setting.precision));
        (vae, cast_module(ClipVisionModelWithProjection::new(&vision, &device).no_grad(), args.setting.precision))
    });
    let mut step = |hypernet: loc_core::hypernet::Hypernetwork| {
        let random = |shape: [usize; 2]| Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let features = match &encoders {
            Some((vae, vision)) => {
                let image_side = vae.as_ref().map_or(side, |_| 8 * side);
                let images =
                    |n| Tensor::<4>::random([n, 3, image_side, image_side], Distribution::Uniform(-1.0, 1.0), &device);
                if let Some(vae) = vae {
                    let _ = vae.encode(images(4 * pairs)).mean.into_data();
                }
                let (pooled, _) = image_features(vision, images(2 * pairs), false);
                let pooled = pooled.narrow(1, 0, features).detach();
                PairFeatures {
                    before: pooled.clone().narrow(0, 0, pairs),
                    after: pooled.narrow(0, pairs, pairs),
                    patches: None,
                }
            }
            None => PairFeatures { before: random([pairs, features]), after: random([pairs, features]), patches: None },
        };
        let lora = hypernet.forward(features);
        let lora = LoraSet::cat(vec![lora.clone(), lora.negate()]);
        let x0 = Tensor::<4>::random([2 * pairs, latent, side, side], Distribution::Normal(0.0, 1.0), &device);
        let condition = x0.clone().flip([0]);
        let noise = x0.random_like(Distribution::Normal(0.0, 1.0));
        let timesteps: Vec<usize> = (0..2 * pairs).map(|i| 37 * i % 1000).collect();
        let loss =
            denoising_loss(&unet, &schedule, x0, condition, context.clone(), Some(&lora), &timesteps, noise).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &hypernet);
        optim.step(hypernet, grads, 1.0, 1e-4)
    };
    hypernet = step(hypernet);
    // The median step: one slow step (a page fault storm, another process) moves a mean. At
    // SD-1.5 the first timed calls can still be growing the allocator's pages, so 5.
    let runs = if args.setting.sd15 { 5 } else { 9 };
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        device.sync()?;
        let start = Instant::now();
        hypernet = step(hypernet);
        device.sync()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let seconds = times[runs / 2];
    // A device's pools keep the pages they grew to: what they hold after the steps is the peak.
    let device_gib = device.memory_pool_usage().map(|u| u.bytes_reserved as f64 / (1u64 << 30) as f64);
    println!(
        "| setting | device | precision | checkpointing | encoders | pairs/step | latents | step s | pairs/s | peak RSS GiB | device GiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {name} ({} targets) | {} | {} | {} | {} | {pairs} | {side}x{side} | {seconds:.3} | {:.2} | {:.2} | {} |",
        targets.len(),
        args.setting.device,
        args.setting.precision,
        args.gradient_checkpointing,
        args.encoders,
        pairs as f64 / seconds,
        peak_rss_gib(),
        device_gib.map_or("-".into(), |g| format!("{g:.2}")),
    );
    Ok(())
}
