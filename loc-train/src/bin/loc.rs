//! `loc`: every command in one file, for a machine that gets one file and has no Rust (a GPU
//! node; `scripts/gpu-pack.sh`). `loc train CONFIG ...` is `loc-train`, `loc eval COMMAND ...`
//! is `loc-eval`, `loc bench step|edit ...` are the benchmarks `cargo bench` runs.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use loc_core::exit_code;
use loc_train::bench::{edit::EditArgs, step::StepArgs};

loc_core::global_allocator!();

#[derive(Parser)]
#[command(version, about = "LoRA of Change: training, evaluation and benchmarks in one binary")]
enum Loc {
    /// Train from a TOML configuration (as `loc-train`).
    Train(loc_train::cli::Args),
    /// Edit, evaluate and check parity (as `loc-eval`).
    Eval(loc_eval::cli::Args),
    /// Time a hypernet step or an edit (as `cargo bench -p loc-train`).
    #[command(subcommand)]
    Bench(Bench),
}

#[derive(Subcommand)]
enum Bench {
    /// One LoRA Reverse step of `H` against the frozen UNet.
    Step(StepArgs),
    /// One InstructPix2Pix edit.
    Edit(EditArgs),
}

fn main() -> ExitCode {
    loc_core::runtime::run(|| {
        exit_code(match Loc::parse() {
            Loc::Train(args) => loc_train::cli::run(args),
            Loc::Eval(args) => loc_eval::cli::run(args),
            Loc::Bench(Bench::Step(args)) => loc_train::bench::step::run(&args),
            Loc::Bench(Bench::Edit(args)) => loc_train::bench::edit::run(&args),
        })
    })
}
