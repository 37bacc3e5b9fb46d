//! The UNet against diffusers on tiny random models (fixtures from
//! `scripts/make_unet_fixtures.py`), LoRA injection, and clear errors for bad folders.

mod common;

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::Distribution;
use common::*;
use loc_core::device::{Precision, cast_module};
use loc_core::lora::{LoraDelta, LoraSet, LoraTarget, TargetKind, merge_lora};
use loc_core::unet::{UNet2DConditionConfig, UNet2DConditionModel};

struct Io {
    sample: Tensor<4>,
    timestep: Tensor<1>,
    context: Tensor<3>,
    reference: std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
}

fn io(name: &str, device: &Device) -> Io {
    let reference = read_reference(&fixture(name).join("io.safetensors"));
    Io {
        sample: tensor(&reference["sample"], device),
        timestep: tensor(&reference["timestep"], device),
        context: tensor(&reference["encoder_hidden_states"], device),
        reference,
    }
}

/// A rank-4 LoRA for two samples on every target, factors ~ N(0, 0.3), scale 0.5.
fn random_lora(targets: &[LoraTarget], device: &Device) -> LoraSet {
    targets
        .iter()
        .map(|t| {
            let down = Tensor::random([2, 4, t.d_in], Distribution::Normal(0.0, 0.3), device);
            let up = Tensor::random([2, t.d_out, 4], Distribution::Normal(0.0, 0.3), device);
            (t.path.clone(), LoraDelta::new(down, up, 0.5))
        })
        .collect()
}

fn check_parity(model_dir: &str, io_dir: &str, output: &str) {
    let device = device();
    let unet = UNet2DConditionModel::load(&fixture(model_dir), &device).unwrap();
    let io = io(io_dir, &device);
    let out = unet.forward(io.sample, io.timestep, io.context, None);
    assert_close(out, tensor(&io.reference[output], &device), 1e-4);
}

#[test]
fn conv_projection_unet_matches_diffusers() {
    check_parity("unet_conv", "unet_conv", "out_sample");
}

#[test]
fn linear_projection_unet_with_head_lists_and_two_layers_matches_diffusers() {
    check_parity("unet_linear", "unet_linear", "out_sample");
}

#[test]
fn f16_weights_load_as_f32_and_match_diffusers() {
    check_parity("unet_linear_f16", "unet_linear", "out_sample_f16_weights");
}

#[test]
fn lora_targets_carry_diffusers_paths_and_shapes() {
    let unet = UNet2DConditionModel::load(&fixture("unet_linear"), &device()).unwrap();
    let targets = unet.lora_targets();
    // Transformers: 2 + 2 (down), 1 (mid), 3 + 3 (up); each has proj_in/out, 2 x 4 attention
    // projections and 2 feed-forward linears.
    assert_eq!(targets.len(), (2 + 2 + 1 + 3 + 3) * 12);
    let find = |p: &str| targets.iter().find(|t| t.path == p).unwrap_or_else(|| panic!("no target {p}"));
    let q = find("down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q");
    assert_eq!((q.d_in, q.d_out, q.kind), (8, 8, TargetKind::Linear));
    let k = find("up_blocks.2.attentions.0.transformer_blocks.0.attn2.to_k");
    assert_eq!((k.d_in, k.d_out), (12, 8));
    assert_eq!(find("mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0").d_out, 16);
    assert_eq!(find("mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj").d_out, 128);
    assert_eq!(find("mid_block.attentions.0.proj_in").kind, TargetKind::Linear);
    let conv = UNet2DConditionModel::load(&fixture("unet_conv"), &device()).unwrap();
    let proj = conv.lora_targets().into_iter().find(|t| t.path == "down_blocks.0.attentions.0.proj_out").unwrap();
    assert_eq!(proj.kind, TargetKind::Conv1x1);
}

#[test]
fn a_zero_lora_changes_nothing_and_a_random_one_equals_the_merged_unet() {
    let device = device();
    for name in ["unet_conv", "unet_linear"] {
        let unet = UNet2DConditionModel::load(&fixture(name), &device).unwrap();
        let io = io(name, &device);
        let forward = |u: &UNet2DConditionModel, lora: Option<&LoraSet>| {
            u.forward(io.sample.clone(), io.timestep.clone(), io.context.clone(), lora)
        };
        let targets = unet.lora_targets();
        let base = forward(&unet, None);
        let zero = LoraSet::zeros(&targets, 2, 4, &device);
        assert_eq!(values(forward(&unet, Some(&zero))), values(base.clone()), "{name}");

        let lora = random_lora(&targets, &device);
        let dynamic = forward(&unet, Some(&lora));
        assert!(max_abs_diff(dynamic.clone(), base) > 1e-2, "{name}: the LoRA must matter");
        for sample in 0..2 {
            let merged = merge_lora(unet.clone(), &lora, sample, 1.0).unwrap();
            let static_out = forward(&merged, None).narrow(0, sample, 1);
            assert_close(static_out, dynamic.clone().narrow(0, sample, 1), 1e-4);
        }
    }
}

/// The frozen UNet stored in bf16 / f16 against f32, with and without f32 LoRA factors: the
/// worst element within 4% / 0.6% of the output's scale (measured 2.7% / 0.4%: bf16 keeps 8
/// mantissa bits, f16 11, and the errors differ by that 2^3), and the output comes back f32.
#[test]
fn half_precision_unets_stay_close_to_f32() {
    let device = device();
    for name in ["unet_conv", "unet_linear"] {
        let unet = UNet2DConditionModel::load(&fixture(name), &device).unwrap();
        let io = io(name, &device);
        let lora = random_lora(&unet.lora_targets(), &device);
        let forward = |u: &UNet2DConditionModel, lora: Option<&LoraSet>| {
            u.forward(io.sample.clone(), io.timestep.clone(), io.context.clone(), lora)
        };
        let (reference, with_lora) = (forward(&unet, None), forward(&unet, Some(&lora)));
        for (precision, tolerance) in [(Precision::Bf16, 4e-2), (Precision::F16, 6e-3)] {
            let half = cast_module(unet.clone(), precision);
            let out = forward(&half, None);
            assert_eq!(out.dtype(), burn::tensor::DType::F32, "{name} {precision}");
            assert_close(out, reference.clone(), tolerance);
            assert_close(forward(&half, Some(&lora)), with_lora.clone(), tolerance);
        }
    }
}

/// Each sample is computed from its own input and its own LoRA alone: LoRA Reverse puts the
/// rows `B -> B'` and `B' -> B` of a pair in one batch, so any mixing across the batch would
/// hand the forward rows their target (and training would learn to use it).
#[test]
fn a_sample_and_its_lora_give_the_same_output_whatever_its_batch_mates() {
    let device = device();
    for (name, channels) in [("unet_conv", 4), ("unet_linear", 8)] {
        let unet = UNet2DConditionModel::load(&fixture(name), &device).unwrap();
        let n = 4;
        let sample = randn([n, channels, 16, 16], &device);
        let timesteps = Tensor::<1>::from_floats([10.0, 300.0, 600.0, 990.0], &device);
        let context = randn([n, 5, 12], &device);
        let lora: LoraSet = unet
            .lora_targets()
            .iter()
            .map(|t| {
                let down = Tensor::random([n, 4, t.d_in], Distribution::Normal(0.0, 0.3), &device);
                let up = Tensor::random([n, t.d_out, 4], Distribution::Normal(0.0, 0.3), &device);
                (t.path.clone(), LoraDelta::new(down, up, 1.0))
            })
            .collect();
        let batch = unet.forward(sample.clone(), timesteps.clone(), context.clone(), Some(&lora));
        for i in 0..n {
            let row = |t: Tensor<4>| t.narrow(0, i, 1);
            let alone = unet.forward(
                row(sample.clone()),
                timesteps.clone().narrow(0, i, 1),
                context.clone().narrow(0, i, 1),
                Some(&lora.clone().select(&[i])),
            );
            assert_close(alone, row(batch.clone()), 1e-5);
        }
    }
}

#[test]
fn bad_folders_and_configs_are_clear_errors() {
    let device = device();
    let dir = tempfile::tempdir().unwrap();
    let err = UNet2DConditionModel::load(dir.path(), &device).unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");

    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("unet_conv/config.json")).unwrap()).unwrap();
    let write_config =
        |value: &serde_json::Value| std::fs::write(dir.path().join("config.json"), value.to_string()).unwrap();
    let mut unknown = config.clone();
    unknown["down_block_types"][1] = "SimpleDownBlock2D".into();
    write_config(&unknown);
    let err = UNet2DConditionModel::load(dir.path(), &device).unwrap_err().to_string();
    assert!(err.contains("down_block_types[1]") && err.contains("SimpleDownBlock2D"), "{err}");

    write_config(&config);
    let err = UNet2DConditionModel::load(dir.path(), &device).unwrap_err().to_string();
    assert!(err.contains("diffusion_pytorch_model.safetensors"), "{err}");

    let weights = std::fs::read(fixture("unet_conv/diffusion_pytorch_model.safetensors")).unwrap();
    std::fs::write(dir.path().join("diffusion_pytorch_model.safetensors"), &weights[..weights.len() / 2]).unwrap();
    let err = UNet2DConditionModel::load(dir.path(), &device).unwrap_err().to_string();
    assert!(err.contains("diffusion_pytorch_model.safetensors"), "{err}");

    // Weights of another shape: a cross-attention width the file does not have.
    std::fs::write(dir.path().join("diffusion_pytorch_model.safetensors"), &weights).unwrap();
    let mut wider = config.clone();
    wider["cross_attention_dim"] = 20.into();
    write_config(&wider);
    let err = UNet2DConditionModel::load(dir.path(), &device).unwrap_err().to_string();
    assert!(err.contains("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"), "{err}");

    assert!(UNet2DConditionConfig::sd15_instruct_pix2pix().validate().is_ok());
    assert!(UNet2DConditionConfig::tiny().validate().is_ok());
}

/// Real size: ~10 s and ~4 GB on 2 cores. `cargo test --release -p loc-core --test unet -- --ignored`
#[test]
#[ignore]
fn the_sd15_instruct_pix2pix_unet_builds_and_runs_at_32x32_latents() {
    let device = device();
    let config = UNet2DConditionConfig::sd15_instruct_pix2pix();
    let unet = UNet2DConditionModel::new(&config, &device);
    assert_eq!(unet.num_params(), 859_532_484, "diffusers' parameter count for this config");
    assert_eq!(unet.lora_targets().iter().filter(|t| t.path.contains(".attn")).count(), 128);
    let out = unet.forward(
        randn([1, 8, 32, 32], &device),
        Tensor::from_floats([500.0], &device),
        randn([1, 77, 768], &device),
        None,
    );
    assert_eq!(out.dims(), [1, 4, 32, 32]);
}
