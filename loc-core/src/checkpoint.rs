//! What a LoC training run leaves behind, readable without the trainer: a manifest (where the
//! frozen editor and image encoder are, the hypernetwork's configuration, its targets) and the
//! hypernetwork's weights.
//!
//! ```text
//! CHECKPOINT/loc_checkpoint.json     CheckpointManifest
//! CHECKPOINT/hypernet.safetensors    H's weights
//! CHECKPOINT/image_encoder/          the image encoder, when it was trained with H
//! ```

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::clip::ClipVisionModelWithProjection;
use crate::device::{Precision, cast_module};
use crate::error::ModelError;
use crate::hypernet::{HypernetConfig, Hypernetwork, pair_features, select_targets};
use crate::lora::LoraSet;
use crate::pipeline::{EditOptions, InstructPix2Pix};
use crate::weights::{load_safetensors, read_config, save_safetensors, write_config};

pub const MANIFEST_FILE: &str = "loc_checkpoint.json";
pub const HYPERNET_FILE: &str = "hypernet.safetensors";
/// A trained image encoder's folder (transformers layout) inside the checkpoint.
pub const IMAGE_ENCODER_DIR: &str = "image_encoder";

/// Paths are relative to the checkpoint folder unless absolute.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointManifest {
    pub format_version: u32,
    /// The frozen InstructPix2Pix (a diffusers folder).
    pub editor: PathBuf,
    /// The CLIP vision tower `H` reads the pair with.
    pub image_encoder: PathBuf,
    pub hypernet: HypernetConfig,
    /// UNet targets that get a LoRA: paths ending in one of these.
    pub target_suffixes: Vec<String>,
    /// Side of the square images the editor works at.
    pub resolution: u32,
    /// Training steps done when the weights were written.
    pub step: u64,
}

/// Writes `manifest` and `hypernet`'s weights into `dir` (created if needed).
pub fn save_checkpoint(dir: &Path, manifest: &CheckpointManifest, hypernet: &Hypernetwork) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io { path: dir.to_path_buf(), source })?;
    save_safetensors(hypernet, &dir.join(HYPERNET_FILE))?;
    write_config(&dir.join(MANIFEST_FILE), manifest, None)
}

/// A trained LoC model: the frozen editor, the image encoder and `H`.
pub struct LocModel {
    pub editor: InstructPix2Pix,
    pub encoder: ClipVisionModelWithProjection,
    pub hypernet: Hypernetwork,
    pub manifest: CheckpointManifest,
}

impl LocModel {
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let manifest: CheckpointManifest = read_config(&dir.join(MANIFEST_FILE))?;
        let resolve = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { dir.join(p) };
        let editor = InstructPix2Pix::load(&resolve(&manifest.editor), device)?;
        let encoder = ClipVisionModelWithProjection::load(&resolve(&manifest.image_encoder), device)?;
        let suffixes: Vec<&str> = manifest.target_suffixes.iter().map(String::as_str).collect();
        let targets = select_targets(&editor.unet.lora_targets(), &suffixes);
        let hypernet = load_safetensors(manifest.hypernet.init(&targets, device), &dir.join(HYPERNET_FILE))?.no_grad();
        Ok(Self { editor, encoder, hypernet, manifest })
    }

    /// The frozen editor and image encoder in `precision`; `H` stays f32.
    pub fn with_precision(self, precision: Precision) -> Self {
        Self { editor: self.editor.with_precision(precision), encoder: cast_module(self.encoder, precision), ..self }
    }

    /// `Δ = H(A, A')` for images in `[-1, 1]` at the model resolution.
    pub fn generate(&self, before: Tensor<4>, after: Tensor<4>) -> LoraSet {
        let patches = self.manifest.hypernet.patch_dim.is_some();
        self.hypernet.forward(pair_features(&self.encoder, before, after, patches))
    }

    /// `B' = G(Δ, B)` with the empty instruction; `lora` from [`generate`](Self::generate) or a
    /// file, already scaled or negated as wanted.
    pub fn edit(&self, query: Tensor<4>, lora: &LoraSet, options: &EditOptions) -> Tensor<4> {
        let empty = self.editor.encode_prompts(&vec![""; query.dims()[0]], &query.device());
        self.editor.edit_with_states(query, empty.clone(), empty, Some(lora), options)
    }
}
