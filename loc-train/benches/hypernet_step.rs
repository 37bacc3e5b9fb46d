//! One LoRA Reverse step of `H` against the frozen UNet, timed (`loc_train::bench::step`).
//!
//! `cargo bench -p loc-train --bench hypernet_step` (the tiny world's UNet, 16 pairs at 16x16)
//! `cargo bench -p loc-train --bench hypernet_step -- --sd15 [--device cuda --precision bf16 --pairs 8]`

use clap::Parser;
use loc_train::bench::step::{StepArgs, run};

loc_core::global_allocator!();

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    step: StepArgs,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> std::process::ExitCode {
    loc_core::runtime::run(|| loc_core::exit_code(run(&Args::parse().step)))
}
