//! A tour of `loc_core::lora`: per-sample LoRAs on frozen layers, LoRA Reverse's `-Δ`,
//! a static merge, and a kohya file that other tools load.
//!
//! `cargo run --release -p loc-core --example per_sample_lora`

use burn::prelude::*;
use burn::tensor::Distribution;
use loc_core::lora::*;

fn main() -> Result<(), LoraError> {
    let device = Device::flex();
    device.seed(0);
    let normal = |shape: [usize; 3]| Tensor::<3>::random(shape, Distribution::Normal(0.0, 0.1), &device);

    // Two frozen layers named like diffusers' first self-attention.
    let prefix = "down_blocks.0.attentions.0.transformer_blocks.0.attn1";
    let config = LoraLayerConfig::new(32, 32);
    let to_q = config.init_linear(format!("{prefix}.to_q"), &device);
    let to_out = config.init_linear(format!("{prefix}.to_out.0"), &device);
    let targets = [to_q.target.clone(), to_out.target.clone()];

    // A batch of 2 samples, each with its own rank-4 LoRA (what the hypernetwork emits).
    let lora: LoraSet = targets
        .iter()
        .map(|t| (t.path.clone(), LoraDelta::new(normal([2, 4, t.d_in]), normal([2, t.d_out, 4]), 1.0)))
        .collect();
    let x = Tensor::<3>::random([2, 10, 32], Distribution::Normal(0.0, 1.0), &device);
    let edit = |lora: Option<&LoraSet>| to_out.forward_lora(to_q.forward_lora(x.clone(), lora), lora);
    let base = edit(None);
    let plus = edit(Some(&lora));
    let minus = edit(Some(&lora.clone().negate()));
    let change = |y: Tensor<3>| (y - base.clone()).abs().mean().into_scalar::<f32>();
    println!("mean |change| with +Δ: {:.4}, with -Δ: {:.4}", change(plus.clone()), change(minus));

    // Guidance branches: [with LoRA, without LoRA] for both samples, in one batch.
    let branches = LoraSet::cat(vec![lora.clone(), lora.clone().scaled(0.0)]);
    let both = to_q.forward_lora(Tensor::cat(vec![x.clone(), x.clone()], 0), Some(&branches));
    println!("guidance batch: {:?}", both.dims());

    // Static LoRA: fold sample 1 into the weights; same output as the dynamic path.
    let merged_q = to_q.clone().merge(lora.get(&to_q.target.path).expect("to_q delta"), 1, 1.0);
    let merged_out = to_out.clone().merge(lora.get(&to_out.target.path).expect("to_out delta"), 1, 1.0);
    let x1 = x.clone().narrow(0, 1, 1);
    let static_y = merged_out.forward(merged_q.forward(x1, None), None);
    let dynamic_y = plus.narrow(0, 1, 1);
    println!("merged vs dynamic, max |diff|: {:.2e}", (static_y - dynamic_y).abs().max().into_scalar::<f32>());

    // Export sample 1 for ComfyUI / A1111 / diffusers, then read it back.
    let path = std::env::temp_dir().join("loc_example_lora.safetensors");
    save_lora(&path, &lora, &targets, 1, &ExportOptions::new(LoraFormat::Kohya))?;
    let file = load_lora(&path, &targets, &device)?;
    println!(
        "wrote {} ({:?}, {} targets, metadata: ss_network_dim = {})",
        path.display(),
        file.format,
        file.set.len(),
        file.metadata["ss_network_dim"]
    );
    Ok(())
}
