//! UNet forward (inference) and forward+backward (gradients to a rank-4 LoRA on every attention
//! projection, as in hypernetwork training), tiny and SD-1.5 InstructPix2Pix configs.
//!
//! `cargo bench -p loc-core --bench unet [-- --sd15]` prints a table; `--sd15` adds the
//! real-size UNet at 32x32 latents (minutes and ~8 GB on 2 cores).

use std::time::Instant;

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::Distribution;
use loc_core::lora::{LoraDelta, LoraSet};
use loc_core::unet::{UNet2DConditionConfig, UNet2DConditionModel};

loc_core::global_allocator!();

/// Peak resident memory of this process so far (Linux), in GiB.
fn peak_rss_gib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib =
        status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok());
    kib.unwrap_or(0.0) / (1024.0 * 1024.0)
}

fn bench(name: &str, config: &UNet2DConditionConfig, batch: usize, side: usize, repeats: usize) {
    let device = Device::flex().autodiff();
    device.seed(0);
    let normal = |shape: [usize; 3]| Tensor::<3>::random(shape, Distribution::Normal(0.0, 0.1), &device);
    let unet = UNet2DConditionModel::new(config, &device).no_grad();
    let targets: Vec<_> = unet.lora_targets().into_iter().filter(|t| t.path.contains(".attn")).collect();
    let sample = Tensor::<4>::random([batch, config.in_channels, side, side], Distribution::Normal(0.0, 1.0), &device);
    let timesteps = Tensor::<1>::from_floats(vec![500.0f32; batch].as_slice(), &device);
    let context = normal([batch, 77, config.cross_attention_dim]);
    // The forward alone is inference: the plain model and device, no graph (a graph that no
    // backward consumes stays alive); forward+backward records it and backpropagates into the LoRA.
    let plain = unet.valid();
    let plain_inputs = (sample.clone().inner(), timesteps.clone().inner(), context.clone().inner());
    // One call: one forward (or forward+backward), in seconds.
    let once = |backward: bool| {
        let lora: LoraSet = targets
            .iter()
            .map(|t| {
                let [down, up] = [normal([batch, 4, t.d_in]), normal([batch, t.d_out, 4])];
                let d = if backward {
                    LoraDelta::new(down.require_grad(), up.require_grad(), 1.0)
                } else {
                    LoraDelta::new(down.inner(), up.inner(), 1.0)
                };
                (t.path.clone(), d)
            })
            .collect();
        let start = Instant::now();
        if backward {
            let out = unet.forward(sample.clone(), timesteps.clone(), context.clone(), Some(&lora));
            let _grads = out.powi_scalar(2).mean().backward();
        } else {
            let (sample, timesteps, context) = plain_inputs.clone();
            let _ = plain.forward(sample, timesteps, context, Some(&lora)).into_data();
        }
        start.elapsed().as_secs_f64()
    };
    // Both modes once untimed (first-touch pages, lazy buffers), then the median of `repeats`.
    once(false);
    once(true);
    let median = |backward: bool| {
        let mut times: Vec<f64> = (0..repeats).map(|_| once(backward)).collect();
        times.sort_by(f64::total_cmp);
        times[repeats / 2]
    };
    let forward = median(false);
    let both = median(true);
    println!(
        "| {name} | {:.1}M | {batch}x{}x{side}x{side} | {} | {forward:.3} | {both:.3} | {:.1} |",
        unet.num_params() as f64 / 1e6,
        config.in_channels,
        targets.len(),
        peak_rss_gib()
    );
}

fn main() {
    loc_core::runtime::run(benchmark);
}

fn benchmark() {
    println!("| config | params | input | LoRA targets | forward s | forward+backward s | peak RSS GiB |");
    println!("|---|---|---|---|---|---|---|");
    bench("tiny", &UNet2DConditionConfig::tiny(), 8, 16, 9);
    if std::env::args().any(|a| a == "--sd15") {
        // 5: the first forward + backward after the forwards still faults in ~1 GB of fresh
        // pages (4.9 s, then 2.8-2.9 s), which a median of 3 can report.
        bench("SD-1.5 InstructPix2Pix", &UNet2DConditionConfig::sd15_instruct_pix2pix(), 1, 32, 5);
    }
}
