//! The `forward` parity command, run as a user would, on loc-core's reference fixtures.

use std::path::{Path, PathBuf};
use std::process::Command;

use loc_core::weights::read_safetensors;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../loc-core/tests/fixtures").join(name)
}

fn forward(component: &str, model: &str, inputs: &Path, output: &Path) -> std::process::Output {
    forward_with(component, model, inputs, output, &[])
}

fn forward_with(component: &str, model: &str, inputs: &Path, output: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loc-eval"))
        .args(["forward", "--component", component, "--model-dir"])
        .arg(fixture(model))
        .arg("--inputs")
        .arg(inputs)
        .arg("--output")
        .arg(output)
        .args(extra)
        .output()
        .unwrap()
}

/// `--reference` (what the GPU check runs): every fixture within 1e-3 in f32; bf16 deviates
/// more, and a deviation past `--tolerance` fails naming it.
#[test]
fn reference_checks_pass_in_f32_and_fail_past_the_tolerance() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.safetensors");
    for (component, model) in [("unet", "unet_conv"), ("vae-decode", "vae"), ("clip-text", "clip_text_gelu")] {
        let io = fixture(model).join("io.safetensors");
        let io = io.to_str().unwrap();
        let run = forward_with(component, model, Path::new(io), &out, &["--reference", io]);
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success() && stdout.contains("relative"), "{component}: {stdout}");
        let half = ["--reference", io, "--precision", "bf16", "--tolerance", "1e-6"];
        let run = forward_with(component, model, Path::new(io), &out, &half);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success() && stderr.contains("> --tolerance"), "{component} bf16: {stderr}");
    }
}

fn assert_matches(output: &Path, name: &str, reference: &Path, reference_name: &str) {
    let got = read_safetensors(output).unwrap()[name].floats();
    let want = read_safetensors(reference).unwrap()[reference_name].floats();
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let diff = got.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff <= 1e-4 * scale, "{name}: max diff {diff}");
}

#[test]
fn every_component_reproduces_its_reference() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("unet", "unet_linear", "unet_linear/io.safetensors", vec![("sample", "out_sample")]),
        ("vae-encode", "vae", "vae/io.safetensors", vec![("mean", "mean")]),
        ("vae-decode", "vae", "vae/io.safetensors", vec![("sample", "decoded")]),
        (
            "clip-text",
            "clip_text",
            "clip_text/io.safetensors",
            vec![("last_hidden_state", "last_hidden_state"), ("pooler_output", "pooler_output")],
        ),
        ("clip-vision", "clip_vision", "clip_vision/io.safetensors", vec![("image_embeds", "image_embeds")]),
        ("clip-vision", "clip_full", "clip_full/io.safetensors", vec![("image_embeds", "image_embeds")]),
        ("clip-text-projected", "clip_full", "clip_full/io.safetensors", vec![("text_embeds", "text_embeds")]),
        (
            "dino",
            "vit_dino",
            "vit_dino/io.safetensors",
            vec![("cls", "cls"), ("last_hidden_state", "last_hidden_state")],
        ),
    ];
    for (component, model, io, outputs) in cases {
        let out = dir.path().join(format!("{component}.safetensors"));
        let run = forward(component, model, &fixture(io), &out);
        assert!(run.status.success(), "{component}: {}", String::from_utf8_lossy(&run.stderr));
        for (name, reference_name) in outputs {
            assert_matches(&out, name, &fixture(io), reference_name);
        }
    }
}

#[test]
fn a_missing_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let run = forward("vae-decode", "vae", &fixture("unet_conv/io.safetensors"), &dir.path().join("o.safetensors"));
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("latents") && stderr.contains("io.safetensors"), "{stderr}");
}

/// `--lora FILE --lora-scale S` (kohya or PEFT) gives the UNet output of the dynamic path:
/// the same LoRA set, scaled by `S`, applied per sample inside the forward.
#[test]
fn a_lora_file_applied_by_forward_equals_the_dynamic_path() {
    use burn::prelude::*;
    use loc_core::lora::{ExportOptions, LoraDelta, LoraFormat, LoraSet, save_lora};
    use loc_core::unet::UNet2DConditionModel;

    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let unet = UNet2DConditionModel::load(&fixture("unet_linear"), &device).unwrap();
    let targets = unet.lora_targets();
    // Fixed values (no generator), and a different scale per target to exercise the files'
    // scale folding.
    let fixed = |shape: [usize; 3], phase: f32| {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|i| 0.3 * (i as f32 * 0.37 + phase).sin()).collect();
        Tensor::<3>::from_data(TensorData::new(values, shape), &device)
    };
    let set: LoraSet = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (down, up) = (fixed([1, 4, t.d_in], i as f32), fixed([1, t.d_out, 4], 0.5 + i as f32));
            (t.path.clone(), LoraDelta::new(down, up, 0.5 + (i % 3) as f32 * 0.25))
        })
        .collect();
    let io = fixture("unet_linear/io.safetensors");
    let tensors = read_safetensors(&io).unwrap();
    let input = |name: &str| tensors[name].floats();
    let sample = Tensor::<4>::from_data(TensorData::new(input("sample"), [2, 8, 8, 8]), &device);
    let n = sample.dims()[0];
    let timestep = Tensor::<1>::from_data(TensorData::new(input("timestep"), [n]), &device);
    let shape = tensors["encoder_hidden_states"].shape.clone();
    let context =
        Tensor::<3>::from_data(TensorData::new(input("encoder_hidden_states"), [n, shape[1], shape[2]]), &device);
    let dynamic = unet.forward(sample, timestep, context, Some(&set.clone().scaled(0.7).repeat(n)));
    let dynamic: Vec<f32> = dynamic.into_data().try_to_vec::<f32>().unwrap();
    let plain = read_safetensors(&io).unwrap()["out_sample"].floats();
    let scale = dynamic.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let max_diff = |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(max_diff(&dynamic, &plain) > 1e-2 * scale, "the LoRA changes the output");
    for format in [LoraFormat::Kohya, LoraFormat::Peft] {
        let file = dir.path().join(format!("{format:?}.safetensors"));
        save_lora(&file, &set, &targets, 0, &ExportOptions::new(format)).unwrap();
        let out = dir.path().join("o.safetensors");
        let file_arg = file.to_str().unwrap();
        let run = forward_with("unet", "unet_linear", &io, &out, &["--lora", file_arg, "--lora-scale", "0.7"]);
        assert!(run.status.success(), "{format:?}: {}", String::from_utf8_lossy(&run.stderr));
        let got = read_safetensors(&out).unwrap()["sample"].floats();
        let diff = max_diff(&got, &dynamic);
        assert!(diff <= 1e-4 * scale, "{format:?}: max diff {diff}");
    }
    let file = dir.path().join("Kohya.safetensors");
    let run = forward_with(
        "vae-decode",
        "vae",
        &fixture("vae/io.safetensors"),
        &dir.path().join("o.safetensors"),
        &["--lora", file.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && stderr.contains("--lora applies to the UNet only"), "{stderr}");
}
