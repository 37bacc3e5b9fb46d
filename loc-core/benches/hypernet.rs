//! `H` for one pair and for a batch of 16: the tiny UNet's targets and SD-1.5's 128 attention
//! projections (rank 4, default decoder), and the parameter count.
//!
//! `cargo bench -p loc-core --bench hypernet`

use std::time::Instant;

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::Distribution;
use loc_core::hypernet::{DEFAULT_TARGET_SUFFIXES, HypernetConfig, PairFeatures, select_targets};
use loc_core::unet::{UNet2DConditionConfig, UNet2DConditionModel};

loc_core::global_allocator!();

/// CLIP ViT-L/14's vision hidden size: the pooled features `H` reads by default.
const FEATURES: usize = 1024;

fn bench(name: &str, unet: &UNet2DConditionConfig) {
    let device = Device::flex();
    let targets = select_targets(&UNet2DConditionModel::new(unet, &device).lora_targets(), &DEFAULT_TARGET_SUFFIXES);
    let hyper = HypernetConfig::new(FEATURES).init(&targets, &device);
    let time = |n: usize| {
        let features = || Tensor::<2>::random([n, FEATURES], Distribution::Normal(0.0, 1.0), &device);
        let run = || {
            let lora = hyper.forward(PairFeatures { before: features(), after: features(), patches: None });
            lora.iter().for_each(|(_, d)| drop(d.up.clone().into_data()));
        };
        run();
        let start = Instant::now();
        for _ in 0..3 {
            run();
        }
        start.elapsed().as_secs_f64() / 3.0
    };
    println!(
        "| {name} | {} | {:.1}M | {} | {:.4} | {:.4} |",
        targets.len(),
        hyper.num_params() as f64 / 1e6,
        hyper.heads.len(),
        time(1),
        time(16)
    );
}

fn main() {
    loc_core::runtime::run(benchmark);
}

fn benchmark() {
    println!("| UNet targets | targets | H params | shape heads | 1 pair s | 16 pairs s |");
    println!("|---|---|---|---|---|---|");
    bench("tiny", &UNet2DConditionConfig::tiny());
    bench("SD-1.5 InstructPix2Pix", &UNet2DConditionConfig::sd15_instruct_pix2pix());
}
