//! `loc-eval serve`: a local web page to try a checkpoint (see [`crate::serve`]).

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::PathBuf;

use anyhow::{Context, bail};
use loc_data::pipeline::ImageLimits;

use super::{Env, SamplingArgs};
use crate::serve::{ServeOptions, serve};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// A LoC checkpoint folder (loc_checkpoint.json + hypernet.safetensors).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The address to listen on; 0.0.0.0 opens the page to the network.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// The port; 0 picks a free one (printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The largest upload, in MB.
    #[arg(long, default_value_t = 32)]
    max_upload_mb: usize,
    /// Uploads wider or taller than this many pixels are refused from their header, before
    /// decoding.
    #[arg(long, default_value_t = 8192)]
    max_side: u32,
    /// The page's initial sampling settings.
    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn run(args: ServeArgs, env: &Env) -> anyhow::Result<()> {
    if args.max_upload_mb == 0 || args.max_side == 0 {
        bail!("--max-upload-mb and --max-side must be positive");
    }
    let model = env.load(&args.checkpoint)?;
    let listener = TcpListener::bind((args.host, args.port))
        .with_context(|| format!("listening on {}:{} (--host, --port)", args.host, args.port))?;
    let options = ServeOptions {
        listener,
        max_upload_bytes: args.max_upload_mb << 20,
        limits: ImageLimits { max_width: args.max_side, max_height: args.max_side },
        defaults: args.sampling.defaults(),
    };
    serve(model, env.device.clone(), &args.checkpoint.display().to_string(), options)
}
