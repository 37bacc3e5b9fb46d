//! `loc-train`'s command line. The `loc-train` binary and the `loc` multi-call binary both run
//! [`run`].

use std::path::PathBuf;

use anyhow::Context;
use burn::prelude::*;
use loc_core::device::{describe, parse_device};

use crate::config::Config;
use crate::trainer::{RunOptions, run as train};

/// `loc-train CONFIG.toml`: runs what a configuration describes.
#[derive(clap::Parser)]
#[command(version, about = "Train LoRA of Change models from a TOML configuration")]
pub struct Args {
    /// The run configuration (see configs/README.md).
    config: PathBuf,
    /// Override a field: `--set objective.reverse_weight=0` (TOML value; repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Continue a run: `latest` (its newest checkpoint) or a checkpoint folder.
    #[arg(long, value_name = "DIR|latest")]
    resume: Option<String>,
    /// Validate the configuration, open its data sets, print counts, skips and sample shapes,
    /// and stop without training.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: read every image header of every data set (in parallel) and report
    /// usable pairs and every skip by kind.
    #[arg(long, requires = "dry_run")]
    scan: bool,
    /// Where the models run: cpu, cuda, cuda:N, wgpu, vulkan:N (default: the config's
    /// `train.device`, else cpu).
    #[arg(long)]
    device: Option<String>,
}

/// Validates the configuration and its paths, then dry-runs or trains.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config, &args.overrides)?;
    config.check_paths(&args.config)?;
    let spec = args.device.as_deref().or(config.train.device.as_deref()).unwrap_or("cpu");
    let device = parse_device(spec).with_context(|| format!("--device {spec}"))?;
    if device != Device::flex() {
        eprintln!("device: {}", describe(&device));
    }
    if args.dry_run {
        println!("{}: valid", args.config.display());
        return crate::dry_run::dry_run(&config, &device, args.scan, &mut std::io::stdout().lock());
    }
    let options = RunOptions { resume: args.resume, echo: true, stop_after: None };
    let summary = train(&config, &options, &device).with_context(|| format!("run of {}", args.config.display()))?;
    println!("{} steps done ({} skipped for non-finite losses)", summary.steps_done, summary.bad_steps);
    Ok(())
}
