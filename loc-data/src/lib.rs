//! LoC-rs data: before/after pairs and quads from SEED-Data-Edit, MagicBrush, a procedural
//! world and user manifests, decoded and batched ahead of the training step.
//!
//! Nothing is here yet: the data sets arrive with their own issue. The crate exists so that
//! the workspace has its final shape and dependency directions from the start.
