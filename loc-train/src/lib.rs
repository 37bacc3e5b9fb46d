//! The LoC trainer's library: configuration, objectives, the training loop, checkpoints,
//! logs and the quad evaluation.
//!
//! - [`config`]: the TOML run configuration, validated before any work starts.
//! - [`models`]: the editor and image encoder, from folders or the tiny presets, and saving them.
//! - [`objective`]: the denoising loss, the editor objective, LoRA Reverse.
//! - [`optim`]: AdamW, learning-rate schedule, gradient clipping.
//! - [`probe`]: the held-out denoising probe.
//! - [`checkpoint`]: atomic run checkpoints, retention, resume.
//! - [`logging`]: TensorBoard events, progress bar or plain lines.
//! - [`trainer`]: the loop for both stages.
//! - [`dry_run`]: `--dry-run`, the configuration and its data checked without training.

pub mod cache;

pub mod config;
pub mod dry_run;
pub mod logging;
pub mod models;
pub mod objective;
pub mod optim;
pub mod probe;
pub mod run_state;
pub mod trainer;
