//! `loc-eval`: parity runs of the ported models today; metrics, evaluation protocols and the
//! `edit` / `export-lora` commands as their issues land.

mod forward;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Evaluate and use LoRA of Change models")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one model component on inputs from a safetensors file (parity with diffusers /
    /// transformers): unet, vae-encode, vae-decode, clip-text, clip-vision.
    Forward {
        #[arg(long, value_enum)]
        component: forward::Component,
        /// The component's Hugging Face folder (config.json + safetensors).
        #[arg(long)]
        model_dir: PathBuf,
        #[arg(long)]
        inputs: PathBuf,
        #[arg(long)]
        output: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Forward { component, model_dir, inputs, output } => {
            forward::run(component, &model_dir, &inputs, &output)
        }
    }
}
