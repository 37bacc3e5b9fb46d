//! The layouts users download load into the same editor: the original single-file checkpoint
//! (written by diffusers' own diffusers-to-original conversion, fixture from
//! `scripts/make_single_file_fixtures.py`) and fp16 variant files, against the diffusers folder
//! and diffusers' own edit with it.

mod common;

use std::path::Path;

use burn::prelude::*;
use common::*;
use loc_core::pipeline::{EditOptions, InstructPix2Pix, Sampling, edit};
use loc_core::weights::read_safetensors;
use safetensors::tensor::{Dtype, TensorView};

/// `model`'s edit of the fixture's image with its noise: "make it snowy", 3 DDIM steps.
fn snowy(model: &InstructPix2Pix, device: &Device) -> Tensor<4> {
    let io = read_reference(&fixture("sd_layout/io.safetensors"));
    let cond = model.encode_prompts(&["make it snowy"], device);
    let uncond = model.encode_prompts(&[""], device);
    let options = EditOptions::new(Sampling { steps: 3, ..Sampling::default() }, 0);
    let (image, noise) = (tensor::<4>(&io["image"], device), tensor::<4>(&io["noise"], device));
    edit(&model.unet, model.vae.as_ref(), &model.scheduler, image, cond, uncond, noise, None, &options).clamp(-1.0, 1.0)
}

#[test]
fn a_single_file_checkpoint_edits_as_the_diffusers_folder_and_diffusers_do() {
    let device = device();
    let folder = InstructPix2Pix::load(&fixture("sd_layout/diffusers"), &device).unwrap();
    // The folder holds the configs and one `*.safetensors`: the single file is found.
    let single = InstructPix2Pix::load(&fixture("sd_layout/single"), &device).unwrap();
    let (from_folder, from_single) = (snowy(&folder, &device), snowy(&single, &device));
    assert_close(from_single, from_folder.clone(), 1e-6);
    let diffusers = tensor::<4>(&read_reference(&fixture("sd_layout/io.safetensors"))["edited"], &device);
    assert_close(from_folder, diffusers, 1e-4);
    // A file with another model's keys names what it lacks.
    let err = InstructPix2Pix::load_single_file(
        &fixture("sd_layout/diffusers/vae/diffusion_pytorch_model.safetensors"),
        &fixture("sd_layout/single"),
        &device,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("no tensor starts with `model.diffusion_model.`"), "{err}");
}

/// Copies the diffusers folder with every float tensor rounded to f16: stored as f32 under
/// the usual names (`variant = false`), or as f16 under the `fp16` variant's names.
fn rounded_copy(to: &Path, variant: bool) {
    let from = fixture("sd_layout/diffusers");
    for part in ["unet", "vae", "text_encoder", "tokenizer", "scheduler"] {
        std::fs::create_dir_all(to.join(part)).unwrap();
        for entry in std::fs::read_dir(from.join(part)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let Some(stem) = name.strip_suffix(".safetensors") else {
                std::fs::copy(&path, to.join(part).join(&name)).unwrap();
                continue;
            };
            let tensors = read_safetensors(&path).unwrap();
            let bytes: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = tensors
                .iter()
                .map(|(key, t)| match t.ints() {
                    Some(ints) => {
                        (key.clone(), t.shape.clone(), Dtype::I64, ints.iter().flat_map(|v| v.to_le_bytes()).collect())
                    }
                    None => {
                        let halves = t.floats().into_iter().map(half::f16::from_f32);
                        let data = if variant {
                            halves.flat_map(|h| h.to_le_bytes()).collect()
                        } else {
                            halves.flat_map(|h| h.to_f32().to_le_bytes()).collect()
                        };
                        (key.clone(), t.shape.clone(), if variant { Dtype::F16 } else { Dtype::F32 }, data)
                    }
                })
                .collect();
            let views: Vec<(String, TensorView)> = bytes
                .iter()
                .map(|(key, shape, dtype, data)| (key.clone(), TensorView::new(*dtype, shape.clone(), data).unwrap()))
                .collect();
            let file = if variant { format!("{stem}.fp16.safetensors") } else { name };
            std::fs::write(to.join(part).join(file), safetensors::serialize(views, None).unwrap()).unwrap();
        }
    }
}

#[test]
fn an_fp16_variant_folder_edits_as_the_same_weights_in_f32() {
    let device = device();
    let dir = tempfile::tempdir().unwrap();
    rounded_copy(&dir.path().join("f32"), false);
    rounded_copy(&dir.path().join("fp16"), true);
    assert!(dir.path().join("fp16/unet/diffusion_pytorch_model.fp16.safetensors").exists());
    assert!(!dir.path().join("fp16/unet/diffusion_pytorch_model.safetensors").exists());
    let variant = InstructPix2Pix::load(&dir.path().join("fp16"), &device).unwrap();
    let rounded = InstructPix2Pix::load(&dir.path().join("f32"), &device).unwrap();
    let (from_variant, from_rounded) = (snowy(&variant, &device), snowy(&rounded, &device));
    assert_close(from_variant.clone(), from_rounded, 1e-6);
    let full = InstructPix2Pix::load(&fixture("sd_layout/diffusers"), &device).unwrap();
    assert_close(from_variant, snowy(&full, &device), 2e-2);
}
