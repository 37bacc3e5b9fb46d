//! One InstructPix2Pix edit, timed (`loc_train::bench::edit`).
//!
//! `cargo bench -p loc-train --bench edit` (tiny UNet and VAE, 64 px, on the CPU)
//! `cargo bench -p loc-train --bench edit -- --sd15 --device cuda --precision bf16` (512 px, 20 steps)

use clap::Parser;
use loc_train::bench::edit::{EditArgs, run};

loc_core::global_allocator!();

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    edit: EditArgs,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> std::process::ExitCode {
    loc_core::runtime::run(|| loc_core::exit_code(run(&Args::parse().edit)))
}
