//! The LoC trainer's library: configuration and runs.
//!
//! - [`config`]: the TOML run configuration, validated before any work starts.
//! - [`dry_run`]: `--dry-run`, the configuration and its data checked without training.
//! - [`toy`]: LoRA Reverse on a toy linear world, the job `configs/tiny.toml` runs until the
//!   full trainer (editor and hypernetwork stages) lands.

pub mod config;
pub mod dry_run;
pub mod toy;
