//! Group norm on the CPU: burn-nn's composition against the fused op (`loc_core::nn::norm`),
//! forward alone and forward + backward (the input's gradient through a weighted sum), at shapes
//! of the tiny UNet and of SD-1.5 at 32x32 latents.
//!
//! `cargo bench -p loc-core --bench group_norm`

use std::time::Instant;

use burn::nn::GroupNormConfig;
use burn::prelude::*;
use burn::tensor::Distribution;
use loc_core::nn::norm;

loc_core::global_allocator!();

/// Milliseconds per call, the median of 9 runs of 20 calls after 5 untimed ones.
fn time(mut call: impl FnMut()) -> f64 {
    (0..5).for_each(|_| call());
    let mut runs: Vec<f64> = (0..9)
        .map(|_| {
            let start = Instant::now();
            (0..20).for_each(|_| call());
            start.elapsed().as_secs_f64() * 1e3 / 20.0
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[4]
}

fn main() {
    loc_core::runtime::run(|| {
        println!("| input | groups | mode | burn-nn ms | fused ms | burn-nn / fused |");
        println!("|---|---|---|---|---|---|");
        for (shape, groups) in
            [([8, 64, 16, 16], 32), ([8, 128, 8, 8], 32), ([1, 320, 32, 32], 32), ([1, 1280, 4, 4], 32)]
        {
            for backward in [false, true] {
                let device = if backward { Device::flex().autodiff() } else { Device::flex() };
                let layer = GroupNormConfig::new(groups, shape[1]).init(&device);
                let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
                let x = if backward { x.require_grad() } else { x };
                let dy = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
                let ms = [false, true].map(|fused| {
                    time(|| {
                        let y = if fused { norm::group_norm(&layer, x.clone()) } else { layer.forward(x.clone()) };
                        if backward {
                            let grads = (y * dy.clone()).sum().backward();
                            drop(x.grad(&grads).expect("x's gradient").into_data());
                        } else {
                            drop(y.into_data());
                        }
                    })
                });
                let mode = if backward { "forward + backward" } else { "forward" };
                let [a, b, c, d] = shape;
                println!(
                    "| {a}x{b}x{c}x{d} | {groups} | {mode} | {:.3} | {:.3} | {:.2}x |",
                    ms[0],
                    ms[1],
                    ms[0] / ms[1]
                );
            }
        }
    });
}
