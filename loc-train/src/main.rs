//! `loc-train CONFIG.toml`: runs what a configuration describes.

use std::process::ExitCode;

use clap::Parser;
use loc_core::exit_code;
use loc_train::cli::{Args, run};

loc_core::global_allocator!();

fn main() -> ExitCode {
    loc_core::runtime::run(|| exit_code(run(Args::parse())))
}
