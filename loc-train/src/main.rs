//! `loc-train CONFIG.toml`: runs what a configuration describes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use loc_core::device::parse_device;
use loc_core::exit_code;
use loc_train::config::Config;
use loc_train::trainer::{RunOptions, run};

loc_core::global_allocator!();

#[derive(Parser)]
#[command(version, about = "Train LoRA of Change models from a TOML configuration")]
struct Args {
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

fn main() -> ExitCode {
    loc_core::runtime::run(|| exit_code(run_command(Args::parse())))
}

fn run_command(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config, &args.overrides)?;
    config.check_paths(&args.config)?;
    let spec = args.device.as_deref().or(config.train.device.as_deref()).unwrap_or("cpu");
    let device = parse_device(spec).with_context(|| format!("--device {spec}"))?;
    if args.dry_run {
        println!("{}: valid", args.config.display());
        return loc_train::dry_run::dry_run(&config, &device, args.scan, &mut std::io::stdout().lock());
    }
    let options = RunOptions { resume: args.resume, echo: true, stop_after: None };
    let summary = run(&config, &options, &device).with_context(|| format!("run of {}", args.config.display()))?;
    println!("{} steps done ({} skipped for non-finite losses)", summary.steps_done, summary.bad_steps);
    Ok(())
}
