//! LoC-rs core: what another experiment imports.
//!
//! - [`lora`]: LoRA targets, per-sample deltas and sets, LoRA-aware layers, merging, and
//!   kohya / PEFT files.
//! - [`checkpoint`]: what a LoC run leaves behind (manifest + `H`'s weights) and `LocModel`.
//! - [`clip`]: the CLIP text encoder, BPE tokenizer, vision tower, and projections.
//! - [`device`]: a device and a precision from their names (`--device cuda:1`, `bf16`).
//! - [`hypernet`]: `H`, a before/after pair's features to a LoRA set for the UNet's targets.
//! - [`nn`]: blocks shared by the diffusers models (attention, resnet, transformer, embeddings).
//! - [`unet`]: the SD-1.x `UNet2DConditionModel`, a per-sample LoRA set in every forward.
//! - [`pipeline`]: the InstructPix2Pix edit (three-way guidance, DDIM), with an optional LoRA set.
//! - [`schedule`]: the DDPM training schedule and the DDIM sampler, from `scheduler_config.json`.
//! - [`single_file`]: original single-file checkpoints (LDM key names) into the diffusers models.
//! - [`vae`]: Stable Diffusion's `AutoencoderKL` (encode to a latent distribution, decode).
//! - [`vit`]: transformers' `ViTModel` (DINO ViT-S/16 for the DINO metric).
//! - [`inception`]: pytorch-fid's Inception-v3 (the FID metric's features).
//! - [`weights`]: Hugging Face safetensors into burn modules, every mismatch named.
//! - [`runtime`]: how the binaries run on the CPU: mimalloc reusing freed op buffers, the work on
//!   rayon's pool.
//! - [`error`]: [`ModelError`], naming the file, field or tensor at fault.

pub mod checkpoint;
pub mod clip;
pub mod device;
pub mod error;
pub mod hypernet;
pub mod inception;
pub mod lora;
pub mod nn;
pub mod pipeline;
pub mod runtime;
pub mod schedule;
pub mod single_file;
pub mod unet;
pub mod vae;
pub mod vit;
pub mod weights;

pub use error::{ModelError, error_report, exit_code};
