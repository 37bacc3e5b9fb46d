//! The LoC trainer's library: configuration, objectives, the training loop, checkpoints,
//! logs and the end-of-run evaluation.
//!
//! - [`config`]: the TOML run configuration, validated before any work starts.
//! - [`models`]: the editor and image encoder, from folders or the tiny presets, and saving them.
//! - [`objective`]: the denoising loss, the editor objective, LoRA Reverse, the quad term.
//! - [`cache`]: `[data] cache`, the frozen encoders' outputs stored once per item.
//! - [`optim`]: AdamW, learning-rate schedule, gradient clipping.
//! - [`probe`]: the held-out denoising probe.
//! - [`trainer`]: [`run`](trainer::run), the stages and the loop they share, on one device
//!   or data-parallel on several ([`run_on`](trainer::run_on)).
//! - [`sync`]: how the devices' gradients are averaged (on the host, or NCCL).
//! - [`run_state`]: the run's own checkpoints (atomic, retained, resumed); the LoC model a
//!   hypernet run exports is `loc_core::checkpoint`.
//! - [`logging`]: TensorBoard events, progress bar or plain lines.
//! - [`dry_run`]: `--dry-run`, the configuration and its data checked without training.
//! - [`cli`]: the `loc-train` command line; [`bench`]: the timed hypernet step and edit
//!   (`cargo bench`, and `loc bench` on a machine without Rust).

pub mod bench;
pub mod cache;
pub mod cli;
pub mod config;
pub mod dry_run;
pub mod ema;
pub mod logging;
pub mod models;
pub mod objective;
pub mod optim;
pub mod probe;
pub mod run_state;
pub mod sync;
pub mod trainer;
