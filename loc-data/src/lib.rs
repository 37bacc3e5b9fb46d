//! LoC-rs data: before/after pairs and quads, decoded and batched ahead of the training step.
//!
//! - [`record`]: what a data set yields (where the pixels are, the instruction, an id).
//! - [`world`]: the procedural world, the embedded default (no files).
//! - [`manifest`]: a user's JSONL of pairs or quads.
//! - [`pipeline`]: decoding with size limits, RGB8, resize + crop, tensors in `[-1, 1]`.
//! - [`skip`]: every item left out is counted with its reason.
//!
//! Every data set implements burn-dataset's [`Dataset`](burn_dataset::Dataset).

pub mod archive;
pub mod config;
pub mod error;
pub mod jsonl;
pub mod loader;
pub mod magicbrush;
pub mod magicbrush_parquet;
pub mod manifest;
pub mod pipeline;
pub mod record;
pub mod resize;
pub mod rng;
pub mod seed;
pub mod skip;
pub mod world;

pub use error::DataError;
pub use record::{ImageSource, PairRecord, QuadRecord};
pub use skip::{Skip, SkipKind, SkipLog};
