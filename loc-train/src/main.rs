//! `loc-train CONFIG.toml`: runs what a configuration describes.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use loc_train::config::{Config, Stage};

#[derive(Parser)]
#[command(version, about = "Train LoRA of Change models from a TOML configuration")]
struct Args {
    /// The run configuration (see configs/README.md).
    config: PathBuf,
    /// Validate the configuration, open its data sets, print counts, skips and sample shapes,
    /// and stop without training.
    #[arg(long)]
    dry_run: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::load(&args.config)?;
    if args.dry_run {
        println!("{}: valid", args.config.display());
        return loc_train::dry_run::dry_run(&config, &mut std::io::stdout().lock());
    }
    match config.stage {
        Stage::LoraToy => {
            println!(
                "loc-train: stage `lora-toy` (LoRA Reverse on a toy linear world). The image trainer \
                 (editor and hypernetwork stages) is not built yet."
            );
            let report = loc_train::toy::run(&config.toy, config.seed, &config.output_dir, |line| println!("{line}"))
                .with_context(|| format!("run of {}", args.config.display()))?;
            println!(
                "held-out quads: transfer mse {:.5} (no LoRA {:.5}); negated LoRA undoes the edit: mse {:.5}",
                report.transfer_mse, report.no_lora_mse, report.reverse_transfer_mse
            );
        }
    }
    Ok(())
}
