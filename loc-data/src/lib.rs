//! LoC-rs data: before/after pairs and quads, decoded and batched ahead of the training step.
//! Every data set implements burn-dataset's [`Dataset`](burn_dataset::Dataset) and yields
//! cheap [`record`]s; the [`loader`] decodes them in parallel.
//!
//! What a data set yields, and where it comes from:
//! - [`record`]: a pair or quad (where its pixels are, the instruction, an id).
//! - [`world`]: the procedural world, the embedded default (no files).
//! - [`manifest`]: a user's JSONL of pairs or quads ([`jsonl`]: line-by-line reading).
//! - [`seed_data_edit`]: SEED-Data-Edit, all three parts ([`archive`]: its split tarballs,
//!   extracted once).
//! - [`magicbrush`]: MagicBrush's sessions from the folder, the release zip or the Hugging
//!   Face parquet shards.
//!
//! From records to tensors:
//! - [`config`]: the `[data]` section of a run: which sets, with which weights, how loaded.
//! - [`loader`]: weighted mixing, the validation split, parallel decoding ahead of the step.
//! - [`pipeline`]: decoding with size limits, RGB8, resize + crop, tensors in `[-1, 1]` and
//!   back, images read for the editing commands.
//! - [`resize`]: Pillow's bicubic resize, for the evaluation protocols.
//! - [`rng`]: the seeds of every random stream.
//! - [`scan`]: every image header read ahead of training, and the space extractions need.
//! - [`skip`]: every item left out is counted with its reason ([`error`]: what stops a set).

pub mod archive;
pub mod config;
pub mod error;
pub mod jsonl;
pub mod loader;
pub mod magicbrush;

pub mod manifest;
pub mod pipeline;
pub mod record;
pub mod resize;
pub mod rng;
pub mod scan;
pub mod seed_data_edit;
pub mod skip;
pub mod world;

pub use error::DataError;
pub use record::{ImageSource, PairRecord, QuadRecord};
pub use skip::{Skip, SkipKind, SkipLog};
