//! The InstructPix2Pix edit loop against diffusers' pipeline (fixture from
//! `scripts/make_pipeline_fixtures.py`, with the tiny UNet and VAE).

mod common;

use common::*;
use loc_core::lora::LoraSet;
use loc_core::pipeline::{EditOptions, Sampling, edit};
use loc_core::schedule::SchedulerConfig;
use loc_core::unet::UNet2DConditionModel;
use loc_core::vae::AutoencoderKL;

#[test]
fn the_edit_loop_matches_the_diffusers_pipeline_and_a_zero_lora_changes_nothing() {
    let device = device();
    let reference = read_reference(&fixture("pipeline_io.safetensors"));
    let unet = UNet2DConditionModel::load(&fixture("unet_linear"), &device).unwrap();
    let vae = AutoencoderKL::load(&fixture("vae"), &device).unwrap();
    let options = EditOptions::new(Sampling { steps: 4, ..Sampling::default() }, 0);
    let image = tensor::<4>(&reference["image"], &device).mul_scalar(2.0).sub_scalar(1.0);
    let run = |lora: Option<&LoraSet>| {
        edit(
            &unet,
            Some(&vae),
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

#[test]
fn a_diffusers_folder_edits_by_prompt_deterministically_per_seed() {
    use loc_core::pipeline::InstructPix2Pix;
    let device = device();
    let model = InstructPix2Pix::load(&fixture("tiny_ip2p"), &device).unwrap();
    let image = randn([1, 3, 16, 16], &device).clamp(-1.0, 1.0);
    let options = EditOptions::new(Sampling { steps: 3, ..Sampling::default() }, 0);
    let first = model.edit_with_prompts(image.clone(), &["make it snowy"], None, &options);
    assert_eq!(first.dims(), [1, 3, 16, 16]);
    let again = model.edit_with_prompts(image.clone(), &["make it snowy"], None, &options);
    assert_eq!(values(first.clone()), values(again));
    let other_seed =
        model.edit_with_prompts(image.clone(), &["make it snowy"], None, &EditOptions { seed: 1, ..options.clone() });
    assert!(max_abs_diff(first.clone(), other_seed) > 1e-4);
    let other_prompt = model.edit_with_prompts(image, &["a red hat"], None, &options);
    assert!(max_abs_diff(first, other_prompt) > 1e-4);

    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(fixture("unet_linear"), dir.path().join("unet")).unwrap();
    // Without `vae/` the folder is a pixel-space editor; what it lacks next is named.
    let err = InstructPix2Pix::load(dir.path(), &device).err().unwrap().to_string();
    assert!(err.contains("text_encoder") && err.contains("config.json"), "{err}");
}

#[test]
fn lora_guidance_contrasts_with_and_without_the_lora() {
    use loc_core::lora::LoraDelta;
    let device = device();
    let reference = read_reference(&fixture("pipeline_io.safetensors"));
    let unet = UNet2DConditionModel::load(&fixture("unet_linear"), &device).unwrap();
    let vae = AutoencoderKL::load(&fixture("vae"), &device).unwrap();
    let image = tensor::<4>(&reference["image"], &device).mul_scalar(2.0).sub_scalar(1.0);
    let uncond = tensor::<3>(&reference["uncond"], &device);
    let run = |lora: Option<&LoraSet>, sampling: &Sampling| {
        let noise = tensor(&reference["noise"], &device);
        edit(
            &unet,
            Some(&vae),
            &SchedulerConfig::sd15(),
            image.clone(),
            uncond.clone(),
            uncond.clone(),
            noise,
            lora,
            &EditOptions::new(sampling.clone(), 0),
        )
    };
    let lora: LoraSet = unet
        .lora_targets()
        .iter()
        .map(|t| {
            (
                t.path.clone(),
                LoraDelta::new(fixed([1, 2, t.d_in], &device), fixed([1, t.d_out, 2], &device).mul_scalar(0.5), 0.3),
            )
        })
        .collect();
    let guided = Sampling { steps: 3, lora_guidance: Some(4.0), ..Sampling::default() };
    let unguided = Sampling { lora_guidance: Some(0.0), ..guided.clone() };
    let without = Sampling { lora_guidance: None, ..guided.clone() };
    let with_contrast = run(Some(&lora), &guided);
    assert!(max_abs_diff(with_contrast.clone(), run(None, &without)) > 1e-3, "the LoRA changes the edit");
    // s_L = 0 ignores the LoRA entirely: the no-LoRA edit with text scale 0.
    let no_lora_text_zero = Sampling { text_guidance: 0.0, ..without };
    assert_close(run(Some(&lora), &unguided), run(None, &no_lora_text_zero), 1e-5);
}

/// The whole editor (text encoder, VAE, UNet) in bf16 / f16 against f32, without guidance
/// (the tiny random model's text and image branches differ by little, and guidance 7.5
/// multiplies their rounding: bf16 then drifts by 0.45): the worst pixel within 0.1 / 0.02
/// (measured 0.073 / 0.009 in [-1, 1] on one thread; 0.080 / 0.016 since burn-flex splits
/// convolutions and products over threads, which sums in another order).
#[test]
fn a_half_precision_editor_edits_like_the_f32_one() {
    use loc_core::device::Precision;
    use loc_core::pipeline::InstructPix2Pix;
    let device = device();
    let model = InstructPix2Pix::load(&fixture("tiny_ip2p"), &device).unwrap();
    let image = fixed([2, 3, 16, 16], &device);
    let options =
        EditOptions::new(Sampling { steps: 3, text_guidance: 1.0, image_guidance: 1.0, ..Sampling::default() }, 0);
    // Fixed noise: the device's generator is shared with the tests running alongside.
    let noise = fixed(loc_core::pipeline::latent_shape(model.vae.as_ref(), image.dims()), &device);
    let edit = |m: &InstructPix2Pix| {
        let cond = m.encode_prompts(&["make it snowy", "a red hat"], &device);
        let uncond = m.encode_prompts(&["", ""], &device);
        edit(&m.unet, m.vae.as_ref(), &m.scheduler, image.clone(), cond, uncond, noise.clone(), None, &options)
    };
    let reference = edit(&model);
    for (precision, tolerance) in [(Precision::Bf16, 0.1), (Precision::F16, 0.02)] {
        let half = edit(&model.clone().with_precision(precision));
        assert!(max_abs_diff(half, reference.clone()) <= tolerance, "{precision}");
    }
}
