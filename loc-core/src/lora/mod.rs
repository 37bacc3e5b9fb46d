//! The LoRA vocabulary every other part of LoC speaks.
//!
//! - [`LoraTarget`]: a frozen layer a LoRA can modify, named by its diffusers module path.
//! - [`LoraDelta`] (`Δ` in the paper): per-sample factors `down: [N, r, d_in]`,
//!   `up: [N, d_out, r]` and a scale, so that `ΔW_n = scale · up_n · down_n`.
//! - [`LoraSet`]: one delta per target, with the algebra LoC needs: `negate` (LoRA Reverse),
//!   `scaled`, `select`/`repeat`/`cat` along the batch (guidance branches), `+`
//!   (composition).
//! - [`LoraLinear`], [`LoraConv1x1`]: layers computing `base(x_n) + scale · up_n (down_n x_n)`
//!   with batched matmuls, never materialising a per-sample weight.
//! - [`merge_lora`]/[`unmerge_lora`]: static LoRA, folded into any module's weights.
//! - [`save_lora`]/[`load_lora`]: kohya and PEFT files ([`lora_file_bytes`]: in memory).

mod delta;
mod error;
mod file;
mod layers;
mod merge;
mod target;

pub use delta::{LoraDelta, LoraSet};
pub use error::LoraError;
pub(crate) use file::write_atomically;
pub use file::{ExportOptions, LoraFile, LoraFormat, load_lora, lora_file_bytes, save_lora};
pub use layers::{LoraConv1x1, LoraLayerConfig, LoraLinear};
pub use merge::{merge_lora, unmerge_lora};
pub use target::{LoraTarget, TargetKind};
