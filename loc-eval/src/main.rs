//! `loc-eval`: editing with a trained LoC checkpoint (`edit`, `export-lora`, `serve`), the MagicBrush
//! protocol (`magicbrush`, `generate-magicbrush`), quad evaluation (`quads`), the paper's
//! smaller claims (`claims`), and parity runs of the ported models (`forward`). Each command
//! lives in its own module under `cli/`.

use std::process::ExitCode;

use clap::Parser;
use loc_core::exit_code;
use loc_eval::cli::{Args, run};

loc_core::global_allocator!();

fn main() -> ExitCode {
    loc_core::runtime::run(|| exit_code(run(Args::parse())))
}
