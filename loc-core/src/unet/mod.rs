//! Stable Diffusion's UNet (diffusers `UNet2DConditionModel`), SD-1.x block types, with a
//! per-sample LoRA set in every forward.

pub mod config;
pub mod unet_2d_blocks;
pub mod unet_2d_condition;

pub use config::UNet2DConditionConfig;
pub use unet_2d_condition::UNet2DConditionModel;
