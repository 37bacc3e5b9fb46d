//! `loc-eval`: editing with a trained LoC checkpoint (`edit`, `export-lora`), the MagicBrush
//! protocol (`magicbrush`, `generate-magicbrush`), quad evaluation (`quads`), the paper's
//! smaller claims (`claims`), and parity runs of the ported models (`forward`). Each command
//! lives in its own module under `cli/`.

mod cli;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use loc_core::device::{Precision, parse_device};
use loc_core::exit_code;

use cli::Env;

loc_core::global_allocator!();

#[derive(Parser)]
#[command(version, about = "Evaluate and use LoRA of Change models")]
struct Args {
    #[command(subcommand)]
    command: Command,
    /// Where the models run: cpu, cuda, cuda:N, wgpu, vulkan:N.
    #[arg(long, global = true, default_value = "cpu")]
    device: String,
    /// The frozen models' dtype: f32, bf16, f16 (`H` and the metric models stay f32).
    #[arg(long, global = true, default_value = "f32")]
    precision: Precision,
}

#[derive(Subcommand)]
enum Command {
    /// Run one model component on inputs from a safetensors file (parity with diffusers /
    /// transformers): unet, vae-encode, vae-decode, clip-text, clip-text-projected,
    /// clip-vision, dino.
    Forward(cli::forward::ForwardArgs),
    /// Score generated MagicBrush edits against the ground truth (official layout and
    /// formulas): L1, L2, PSNR, SSIM, and CLIP-I / CLIP-T / DINO when their models are given.
    Magicbrush(cli::magicbrush::MagicbrushArgs),
    /// Edit the MagicBrush test split and write the files the `magicbrush` command reads:
    /// the editor with each turn's instruction (`--mode text`), or LoC with a visual
    /// instruction per turn (`--mode pair`).
    GenerateMagicbrush(cli::generate_magicbrush::GenerateArgs),
    /// Evaluate a LoC checkpoint on quads (A, A', B, B'): LoC against do-nothing, copy, and
    /// the editor with the null and the true instruction; pixel metrics, leakage, and CLIP-I /
    /// DINO / Visual CLIP when their models are given.
    Quads(cli::quads::QuadsArgs),
    /// The paper's smaller claims on the procedural world's held-out split: one LoRA reused
    /// on many queries, +Δ then -Δ, and two LoRAs composed (`claims.json`, `claims.md`).
    Claims(cli::claims::ClaimsArgs),
    /// Apply the change shown by a before/after pair (or stored in a LoRA file) to a query image.
    Edit(cli::edit::EditArgs),
    /// Write the LoRA generated for a before/after pair (kohya or PEFT safetensors).
    ExportLora(cli::export_lora::ExportLoraArgs),
}

fn main() -> ExitCode {
    loc_core::runtime::run(|| exit_code(run(Args::parse())))
}

fn run(args: Args) -> anyhow::Result<()> {
    let device = parse_device(&args.device).with_context(|| format!("--device {}", args.device))?;
    args.precision.check(&device)?;
    let env = Env { device, precision: args.precision };
    match args.command {
        Command::Forward(args) => cli::forward::run(args, &env),
        Command::Magicbrush(args) => cli::magicbrush::run(args, &env),
        Command::GenerateMagicbrush(args) => cli::generate_magicbrush::run(args, &env),
        Command::Quads(args) => cli::quads::run(args, &env),
        Command::Claims(args) => cli::claims::run(args, &env),
        Command::Edit(args) => cli::edit::run(args, &env),
        Command::ExportLora(args) => cli::export_lora::run(args, &env),
    }
}
