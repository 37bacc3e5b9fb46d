//! kohya and PEFT files: round trips, exact key names, export options and clear errors.

mod common;

use std::collections::HashMap;
use std::path::Path;

use burn::prelude::*;
use common::*;
use loc_core::lora::*;
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

fn targets() -> Vec<LoraTarget> {
    vec![
        LoraTarget::linear("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", 8, 8),
        LoraTarget::linear("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k", 12, 8),
        LoraTarget::linear("up_blocks.1.attentions.2.transformer_blocks.0.attn1.to_out.0", 8, 8),
        LoraTarget::conv1x1("mid_block.attentions.0.proj_in", 8, 6),
    ]
}

/// Two samples; targets with ranks 2 and 4 and different scales.
fn generated_set(device: &Device) -> LoraSet {
    targets()
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let rank = if i % 2 == 0 { 2 } else { 4 };
            let delta =
                LoraDelta::new(randn([2, rank, t.d_in], device), randn([2, t.d_out, rank], device), 0.5 + i as f32);
            (t.path.clone(), delta)
        })
        .collect()
}

/// The effective update of one sample of each target, `[d_out, d_in]`.
fn updates(set: &LoraSet, sample: usize) -> HashMap<String, Vec<f32>> {
    set.iter().map(|(p, d)| (p.to_string(), values(d.clone().select(&[sample]).weight_delta()))).collect()
}

fn assert_updates_close(found: &HashMap<String, Vec<f32>>, expected: &HashMap<String, Vec<f32>>, factor: f32) {
    assert_eq!(found.len(), expected.len());
    for (path, want) in expected {
        let got = &found[path];
        for (g, w) in got.iter().zip(want) {
            assert!((g - factor * w).abs() <= 1e-5 * (1.0 + w.abs()), "{path}: {g} vs {}", factor * w);
        }
    }
}

/// Tensor names with their shapes, sorted.
type Keys = Vec<(String, Vec<usize>)>;

fn read_header(path: &Path) -> (Keys, HashMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let mut keys: Vec<_> = tensors.iter().map(|(k, v)| (k.to_string(), v.shape().to_vec())).collect();
    keys.sort();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    (keys, meta.metadata().clone().unwrap_or_default())
}

#[test]
fn kohya_round_trip_with_exact_names_alpha_and_metadata() {
    let device = device();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edit.safetensors");
    let set = generated_set(&device);
    save_lora(&path, &set, &targets(), 1, &ExportOptions::new(LoraFormat::Kohya)).unwrap();

    let (keys, meta) = read_header(&path);
    let q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";
    let out = "lora_unet_up_blocks_1_attentions_2_transformer_blocks_0_attn1_to_out_0";
    let proj = "lora_unet_mid_block_attentions_0_proj_in";
    let find = |k: &str| keys.iter().find(|(key, _)| key == k).map(|(_, s)| s.clone());
    assert_eq!(find(&format!("{q}.lora_down.weight")), Some(vec![2, 8]));
    assert_eq!(find(&format!("{q}.lora_up.weight")), Some(vec![8, 2]));
    assert_eq!(find(&format!("{q}.alpha")), Some(vec![]));
    assert_eq!(find(&format!("{out}.lora_down.weight")), Some(vec![2, 8]));
    assert_eq!(find(&format!("{proj}.lora_down.weight")), Some(vec![4, 8, 1, 1]));
    assert_eq!(find(&format!("{proj}.lora_up.weight")), Some(vec![6, 4, 1, 1]));
    assert_eq!(keys.len(), 12);
    assert_eq!(meta["ss_network_module"], "networks.lora");
    assert_eq!(meta["ss_network_dim"], "4");
    assert_eq!(meta["ss_network_alpha"], "4");
    assert_eq!(meta["ss_base_model_version"], "sd_v1");

    // One alpha for every module (the largest rank); the scales live in lora_up.
    let bytes = std::fs::read(&path).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    for (key, view) in tensors.iter().filter(|(k, _)| k.ends_with(".alpha")) {
        assert_eq!(view.data(), 4.0f32.to_le_bytes(), "{key}");
    }

    let file = load_lora(&path, &targets(), &device).unwrap();
    assert_eq!(file.format, LoraFormat::Kohya);
    assert_eq!(file.set.batch_size(), Some(1));
    assert_updates_close(&updates(&file.set, 0), &updates(&set, 1), 1.0);
    let proj_delta = file.set.get("mid_block.attentions.0.proj_in").unwrap();
    assert_eq!(proj_delta.rank(), 4);
    assert_eq!(proj_delta.scale, 1.0);
    let q_delta = file.set.get("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q").unwrap();
    assert_eq!(q_delta.scale, 2.0, "scale = alpha / rank = 4 / 2");
}

#[test]
fn peft_round_trip_with_exact_names_and_the_scale_in_lora_b() {
    let device = device();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edit_peft.safetensors");
    let set = generated_set(&device);
    save_lora(&path, &set, &targets(), 0, &ExportOptions::new(LoraFormat::Peft)).unwrap();

    let (keys, _) = read_header(&path);
    let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    assert!(names.contains(&"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight"));
    assert!(names.contains(&"unet.up_blocks.1.attentions.2.transformer_blocks.0.attn1.to_out.0.lora_B.weight"));
    assert!(names.contains(&"unet.mid_block.attentions.0.proj_in.lora_B.weight"));
    assert_eq!(names.len(), 8, "no alpha in PEFT files: {names:?}");

    let file = load_lora(&path, &targets(), &device).unwrap();
    assert_eq!(file.format, LoraFormat::Peft);
    assert!(file.set.iter().all(|(_, d)| d.scale == 1.0));
    assert_updates_close(&updates(&file.set, 0), &updates(&set, 0), 1.0);
}

#[test]
fn negation_and_strength_are_applied_at_export() {
    let device = device();
    let dir = tempfile::tempdir().unwrap();
    let set = generated_set(&device);
    for format in [LoraFormat::Kohya, LoraFormat::Peft] {
        let path = dir.path().join(format!("{format:?}.safetensors"));
        let options = ExportOptions { strength: 0.75, negate: true, ..ExportOptions::new(format) };
        save_lora(&path, &set, &targets(), 1, &options).unwrap();
        let file = load_lora(&path, &targets(), &device).unwrap();
        assert_updates_close(&updates(&file.set, 0), &updates(&set, 1), -0.75);
        assert_eq!(file.metadata["loc_negated"], "true");
    }
}

#[test]
fn a_loaded_file_merges_into_the_model_like_the_dynamic_path() {
    let device = device();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edit.safetensors");
    let t = &targets()[1];
    let layer = LoraLayerConfig::new(t.d_in, t.d_out).init_linear(&t.path, &device);
    let set: LoraSet = [(t.path.clone(), LoraDelta::new(randn([2, 3, 12], &device), randn([2, 8, 3], &device), 0.3))]
        .into_iter()
        .collect();
    save_lora(&path, &set, &targets(), 1, &ExportOptions::new(LoraFormat::Kohya)).unwrap();
    let loaded = load_lora(&path, &targets(), &device).unwrap().set;
    let merged = layer.clone().merge(loaded.get(&t.path).unwrap(), 0, 1.0);
    let x = randn([1, 5, 12], &device);
    assert_close(merged.forward(x.clone(), None), layer.forward_lora(x, Some(&set.select(&[1]))), 1e-5);
}

fn write_file(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<_> =
        tensors.iter().map(|(k, d, s, b)| (k.to_string(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn f32s(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| (i as f32 * 0.01).to_le_bytes()).collect()
}

#[test]
fn unknown_targets_wrong_shapes_and_missing_factors_name_the_key() {
    let device = device();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    let q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";

    write_file(
        &path,
        &[
            ("lora_unet_down_blocks_9_attn1_to_q.lora_down.weight", Dtype::F32, vec![2, 8], f32s(16)),
            ("lora_unet_down_blocks_9_attn1_to_q.lora_up.weight", Dtype::F32, vec![8, 2], f32s(16)),
        ],
    );
    let err = load_lora(&path, &targets(), &device).unwrap_err().to_string();
    assert!(err.contains("lora_unet_down_blocks_9_attn1_to_q.lora_") && err.contains("bad.safetensors"), "{err}");

    write_file(
        &path,
        &[
            (&format!("{q}.lora_down.weight"), Dtype::F32, vec![2, 8], f32s(16)),
            (&format!("{q}.lora_up.weight"), Dtype::F32, vec![7, 2], f32s(14)),
        ],
    );
    let err = load_lora(&path, &targets(), &device).unwrap_err().to_string();
    assert!(err.contains(&format!("{q}.lora_up.weight")) && err.contains("[7, 2]") && err.contains("[8, 2]"), "{err}");

    write_file(&path, &[(&format!("{q}.lora_down.weight"), Dtype::F32, vec![2, 8], f32s(16))]);
    let err = load_lora(&path, &targets(), &device).unwrap_err().to_string();
    assert!(err.contains(&format!("{q}.lora_up.weight")) && err.contains("missing"), "{err}");

    write_file(&path, &[("text_model.weight", Dtype::F32, vec![2], f32s(2))]);
    assert!(matches!(load_lora(&path, &targets(), &device), Err(LoraError::NotALoraFile { .. })));

    let err = load_lora(&dir.path().join("absent.safetensors"), &targets(), &device).unwrap_err().to_string();
    assert!(err.contains("absent.safetensors"), "{err}");

    let set = generated_set(&device);
    let err =
        save_lora(&path, &set, &targets()[..2], 0, &ExportOptions::new(LoraFormat::Kohya)).unwrap_err().to_string();
    assert!(err.contains("mid_block.attentions.0.proj_in") && err.contains("not a target"), "{err}");
}

#[test]
fn half_precision_files_are_read_as_f32() {
    let device = device();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("half.safetensors");
    let q = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q";
    let halves =
        |vals: &[f32]| -> Vec<u8> { vals.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect() };
    let down: Vec<f32> = (0..16).map(|i| i as f32 * 0.25).collect();
    let up: Vec<f32> = (0..16).map(|i| 1.0 - i as f32 * 0.125).collect();
    write_file(
        &path,
        &[
            (&format!("{q}.lora_A.weight"), Dtype::F16, vec![2, 8], halves(&down)),
            (&format!("{q}.lora_B.weight"), Dtype::F16, vec![8, 2], halves(&up)),
        ],
    );
    let file = load_lora(&path, &targets(), &device).unwrap();
    let delta = file.set.get("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q").unwrap();
    assert_eq!(values(delta.down.clone()), down);
    assert_eq!(values(delta.up.clone()), up);
}

/// A kohya file whose attention projections carry different alphas: each module is scaled by
/// its own `alpha / rank`, as merging the file by hand does. diffusers (0.42, docs/formats.md) gives such
/// projections the file's most common alpha instead (its alpha table keeps old-style module
/// names), so on these files the two differ, and this pins ours.
#[test]
fn kohya_modules_with_different_alphas_are_each_scaled_by_their_own() {
    let device = device();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alphas.safetensors");
    let block = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0";
    let up_block = "lora_unet_up_blocks_1_attentions_2_transformer_blocks_0";
    let targets = targets();
    // (kohya module, target, d_in, d_out, alpha), rank 2 each: to_q's alpha is the odd one out.
    let modules = [
        (format!("{block}_attn1_to_q"), &targets[0].path, 8, 8, 1.0f32),
        (format!("{block}_attn2_to_k"), &targets[1].path, 12, 8, 8.0),
        (format!("{up_block}_attn1_to_out_0"), &targets[2].path, 8, 8, 8.0),
    ];
    let mut tensors = Vec::new();
    for (name, _, d_in, d_out, alpha) in &modules {
        tensors.push((format!("{name}.lora_down.weight"), Dtype::F32, vec![2, *d_in], f32s(2 * d_in)));
        tensors.push((format!("{name}.lora_up.weight"), Dtype::F32, vec![*d_out, 2], f32s(2 * d_out)));
        tensors.push((format!("{name}.alpha"), Dtype::F32, vec![], alpha.to_le_bytes().to_vec()));
    }
    let borrowed: Vec<_> = tensors.iter().map(|(k, d, s, b)| (k.as_str(), *d, s.clone(), b.clone())).collect();
    write_file(&path, &borrowed);

    let file = load_lora(&path, &targets, &device).unwrap();
    for (name, target, d_in, d_out, alpha) in &modules {
        let delta = file.set.get(target).unwrap();
        assert_eq!(delta.scale, alpha / 2.0, "{name}: alpha / rank");
        // By hand: alpha / rank * up @ down, from the file's numbers.
        let (down, up) = (f32s(2 * d_in), f32s(2 * d_out));
        let value = |bytes: &[u8], i: usize| f32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
        let update = values(delta.weight_delta());
        for o in 0..*d_out {
            for i in 0..*d_in {
                let want =
                    alpha / 2.0 * (0..2).map(|r| value(&up, o * 2 + r) * value(&down, r * d_in + i)).sum::<f32>();
                let got = update[o * d_in + i];
                assert!((got - want).abs() <= 1e-6 * (1.0 + want.abs()), "{name} [{o}, {i}]: {got} vs {want}");
            }
        }
    }
}
