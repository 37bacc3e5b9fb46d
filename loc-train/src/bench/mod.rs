//! What the benchmarks time, as functions: `cargo bench -p loc-train --bench hypernet_step`
//! and `--bench edit` call them, and so does `loc bench step|edit`, which runs them on a
//! machine without a Rust toolchain (the GPU check).

pub mod edit;
pub mod step;

use burn::prelude::*;
use loc_core::device::{Precision, parse_device};

/// What every benchmark takes: the model size, the device and the frozen models' dtype.
#[derive(clap::Args)]
pub struct Setting {
    /// SD-1.5 InstructPix2Pix instead of the tiny models.
    #[arg(long)]
    pub sd15: bool,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
}

impl Setting {
    /// The named device, checked to compute in the precision.
    pub fn device(&self) -> anyhow::Result<Device> {
        let device = parse_device(&self.device)?;
        self.precision.check(&device)?;
        Ok(device)
    }
}

/// Peak resident memory of this process so far (`VmHWM`, Linux), in GiB.
pub fn peak_rss_gib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()?.parse().ok());
    kb.unwrap_or(0.0) / (1024.0 * 1024.0)
}
