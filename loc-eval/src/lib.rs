//! LoC-rs evaluation, from metrics to reports.
//!
//! - [`metrics`]: pixel distances (L1, L2, PSNR, SSIM), embedding similarities (CLIP-I,
//!   CLIP-T, Visual CLIP with CLIP; DINO), LPIPS and FID.
//! - [`magicbrush`]: the MagicBrush test protocol over folders in the official layout.
//! - [`generate`]: editing the MagicBrush test split into that layout (text or pair mode).
//! - [`quads`]: a pair's change transferred to a new query `(A, A', B, B')`, against the
//!   baselines.
//! - [`claims`]: the paper's smaller claims on the procedural world (reuse, reverse,
//!   composition).
//! - [`editing`]: a visual instruction applied to queries of any shape (`edit`, `export-lora`,
//!   `generate-magicbrush`, `serve`).
//! - [`serve`]: a local web page to try a checkpoint.
//! - [`report`]: JSON for tools, Markdown for people, PNG contact sheets.
//!
//! [`cli`]: the `loc-eval` command line (one module per command), which calls into these.

pub mod claims;
pub mod cli;
pub mod editing;
pub mod generate;
pub mod magicbrush;
pub mod metrics;
pub mod quads;
pub mod report;
pub mod serve;
