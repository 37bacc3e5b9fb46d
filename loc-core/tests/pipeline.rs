//! The InstructPix2Pix edit loop against diffusers' pipeline (fixture from
//! `scripts/make_pipeline_fixtures.py`, with the tiny UNet and VAE).

mod common;

use common::*;
use loc_core::lora::LoraSet;
use loc_core::pipeline::{EditOptions, edit};
use loc_core::schedule::SchedulerConfig;
use loc_core::unet::UNet2DConditionModel;
use loc_core::vae::AutoencoderKL;

#[test]
fn the_edit_loop_matches_the_diffusers_pipeline_and_a_zero_lora_changes_nothing() {
    let device = device();
    let reference = read_reference(&fixture("pipeline_io.safetensors"));
    let unet = UNet2DConditionModel::load(&fixture("unet_linear"), &device).unwrap();
    let vae = AutoencoderKL::load(&fixture("vae"), &device).unwrap();
    let options = EditOptions { steps: 4, ..EditOptions::default() };
    let image = tensor::<4>(&reference["image"], &device).mul_scalar(2.0).sub_scalar(1.0);
    let run = |lora: Option<&LoraSet>| {
        edit(
            &unet,
            &vae,
            &SchedulerConfig::sd15(),
            image.clone(),
            tensor(&reference["cond"], &device),
            tensor(&reference["uncond"], &device),
            tensor(&reference["noise"], &device),
            lora,
            &options,
        )
    };
    let edited = run(None);
    let in_unit_range = edited.clone().div_scalar(2.0).add_scalar(0.5).clamp(0.0, 1.0);
    assert_close(in_unit_range, tensor(&reference["edited"], &device), 1e-4);

    let zero = LoraSet::zeros(&unet.lora_targets(), 1, 2, &device);
    assert_eq!(values(run(Some(&zero))), values(edited));
}
