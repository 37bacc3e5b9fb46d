//! One InstructPix2Pix edit, timed: VAE encode, `steps` DDIM steps of three-way guidance
//! (three UNet rows per image), VAE decode. Random weights: the cost, not the picture.
//! Defaults: the tiny UNet and VAE at 64 px; `--sd15`: SD-1.5 InstructPix2Pix at 512 px (the
//! GPU check's "edit under 1 s").

use std::time::Instant;

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::Distribution;
use loc_core::device::cast_module;
use loc_core::pipeline::{EditOptions, Sampling, edit, latent_shape};
use loc_core::schedule::SchedulerConfig;
use loc_core::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use loc_core::vae::{AutoencoderKL, AutoencoderKLConfig};

/// The edit's settings (`loc bench edit`, `cargo bench -p loc-train --bench edit --`).
#[derive(clap::Args)]
pub struct EditArgs {
    /// SD-1.5 (at 512 px for the edit) instead of the tiny models (64 px), the device, the dtype.
    #[command(flatten)]
    setting: super::Setting,
    #[arg(long, default_value_t = 20)]
    steps: usize,
}

/// Times the edit and prints one Markdown table.
pub fn run(args: &EditArgs) -> anyhow::Result<()> {
    let (name, unet_config, vae_config, side) = if args.setting.sd15 {
        ("SD-1.5 InstructPix2Pix", UNet2DConditionConfig::sd15_instruct_pix2pix(), AutoencoderKLConfig::sd15(), 512)
    } else {
        ("tiny", UNet2DConditionConfig::tiny(), AutoencoderKLConfig::tiny(), 64)
    };
    let device = args.setting.device()?;
    device.seed(0);
    let unet = cast_module(UNet2DConditionModel::new(&unet_config, &device).no_grad(), args.setting.precision);
    let vae = cast_module(AutoencoderKL::new(&vae_config, &device).no_grad(), args.setting.precision);
    let image = Tensor::<4>::random([1, 3, side, side], Distribution::Uniform(-1.0, 1.0), &device);
    let states = |seed: f64| {
        Tensor::<3>::random([1, 77, unet_config.cross_attention_dim], Distribution::Normal(seed, 1.0), &device)
    };
    let noise = Tensor::<4>::random(latent_shape(Some(&vae), image.dims()), Distribution::Normal(0.0, 1.0), &device);
    let options = EditOptions::new(Sampling { steps: args.steps, ..Sampling::default() }, 0);
    let run = || {
        let edited = edit(
            &unet,
            Some(&vae),
            &SchedulerConfig::sd15(),
            image.clone(),
            states(0.0),
            states(0.1),
            noise.clone(),
            None,
            &options,
        );
        let _ = edited.into_data();
    };
    run();
    let runs = 3;
    let start = Instant::now();
    for _ in 0..runs {
        run();
    }
    let seconds = start.elapsed().as_secs_f64() / runs as f64;
    let device_gib = device.memory_pool_usage().map(|u| u.bytes_reserved as f64 / (1u64 << 30) as f64);
    println!("| setting | device | precision | image | DDIM steps | s/edit | device GiB |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {name} | {} | {} | {side}x{side} | {} | {seconds:.3} | {} |",
        args.setting.device,
        args.setting.precision,
        args.steps,
        device_gib.map_or("-".into(), |g| format!("{g:.2}"))
    );
    Ok(())
}
