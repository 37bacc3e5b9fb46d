//! `loc-train`'s command line. The `loc-train` binary and the `loc` multi-call binary both run
//! [`run`].

use std::path::PathBuf;

use anyhow::Context;
use burn::prelude::*;
use loc_core::device::{describe, parse_device};

use crate::config::Config;
use crate::trainer::{RunOptions, run_on};

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
    /// Train data-parallel, one replica per device: `cuda:0,cuda:1` (default: the config's
    /// `train.devices`). The batch is split evenly; `train.gradient_sync` says how the
    /// gradients are averaged.
    #[arg(long, value_delimiter = ',', conflicts_with = "device")]
    devices: Vec<String>,
}

/// Validates the configuration and its paths, then dry-runs or trains.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config, &args.overrides)?;
    config.check_paths(&args.config)?;
    let specs = match (args.device, args.devices.is_empty()) {
        (Some(spec), _) => vec![spec],
        (None, false) => args.devices,
        (None, true) if !config.train.devices.is_empty() => config.train.devices.clone(),
        (None, true) => vec![config.train.device.clone().unwrap_or_else(|| "cpu".into())],
    };
    config
        .train
        .check_devices(&specs)
        .map_err(|problem| anyhow::anyhow!("--devices {}: {problem}", specs.join(",")))?;
    let mut devices = Vec::new();
    for (rank, spec) in specs.iter().enumerate() {
        let device = parse_device(spec).with_context(|| format!("--device {spec}"))?;
        if device != Device::flex() {
            let rank = if specs.len() > 1 { format!(" {rank}") } else { String::new() };
            eprintln!("device{rank}: {}", describe(&device));
        }
        devices.push(device);
    }
    if args.dry_run {
        println!("{}: valid", args.config.display());
        return crate::dry_run::dry_run(&config, &devices[0], args.scan, &mut std::io::stdout().lock());
    }
    let options = RunOptions { resume: args.resume, echo: true, stop_after: None };
    let summary = run_on(&config, &options, &devices).with_context(|| format!("run of {}", args.config.display()))?;
    println!("{} steps done ({} skipped for non-finite losses)", summary.steps_done, summary.bad_steps);
    Ok(())
}
