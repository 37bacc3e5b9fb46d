//! LoC-rs core: what another experiment imports.
//!
//! - [`lora`]: LoRA targets, per-sample deltas and sets, LoRA-aware layers, merging, and
//!   kohya / PEFT files.
//!
//! Models (UNet, VAE, CLIP, the hypernetwork) and schedules join as their issues land; see
//! the workspace README.

pub mod lora;
