//! Writes a random rank-4 LoRA for the tiny UNet fixture in kohya and PEFT format, with the
//! UNet output it should produce, so that `scripts/check_lora_interop.py` can load the files
//! with diffusers and compare.
//!
//! `cargo run --release -p loc-core --example lora_interop -- OUT_DIR`

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::Distribution;
use loc_core::lora::{ExportOptions, LoraDelta, LoraFormat, LoraSet, save_lora};
use loc_core::unet::UNet2DConditionModel;
use loc_core::weights::{read_safetensors, write_safetensors};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).ok_or("usage: lora_interop OUT_DIR")?);
    std::fs::create_dir_all(&out)?;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unet_linear");
    let device = Device::flex();
    device.seed(9);
    let unet = UNet2DConditionModel::load(&fixtures, &device)?;
    let targets = unet.lora_targets();
    // Different scales per target, so the export's scale folding is exercised.
    let lora: LoraSet = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let down = Tensor::random([1, 4, t.d_in], Distribution::Normal(0.0, 0.3), &device);
            let up = Tensor::random([1, t.d_out, 4], Distribution::Normal(0.0, 0.3), &device);
            (t.path.clone(), LoraDelta::new(down, up, 0.5 + (i % 3) as f32 * 0.25))
        })
        .collect();
    save_lora(&out.join("kohya.safetensors"), &lora, &targets, 0, &ExportOptions::new(LoraFormat::Kohya))?;
    save_lora(&out.join("peft.safetensors"), &lora, &targets, 0, &ExportOptions::new(LoraFormat::Peft))?;

    let io = read_safetensors(&fixtures.join("io.safetensors"))?;
    let tensor = |name: &str, shape: Vec<usize>| {
        Tensor::<1>::from_data(TensorData::new(io[name].floats(), [shape.iter().product::<usize>()]), &device)
    };
    let sample = tensor("sample", io["sample"].shape.clone()).reshape([2, 8, 8, 8]);
    let timestep = tensor("timestep", vec![2]);
    let context = tensor("encoder_hidden_states", io["encoder_hidden_states"].shape.clone()).reshape([2, 5, 12]);
    let expected = unet.forward(sample, timestep, context, Some(&lora));
    let shape = expected.dims().to_vec();
    let values = expected.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| format!("{e:?}"))?;
    write_safetensors(&out.join("expected.safetensors"), &[("sample".into(), shape, values)])?;
    println!("wrote {}/{{kohya,peft,expected}}.safetensors for {} targets", out.display(), targets.len());
    Ok(())
}
