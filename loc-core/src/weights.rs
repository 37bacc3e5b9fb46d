//! Hugging Face safetensors into burn module trees, f16/bf16 files read as f32.
//!
//! Module fields are named like the diffusers / transformers keys, so loading is a name
//! mapping: PyTorch `Linear` weights are transposed for burn's own `Linear`, norms' `weight`
//! and `bias` become `gamma` and `beta`, and our LoRA layers keep the PyTorch orientation.

use std::path::Path;

use burn::module::Module;
use burn::store::{FloatCastAdapter, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::DType;
use serde::de::DeserializeOwned;

use crate::error::ModelError;

/// Reads a `config.json`.
pub fn read_config<T: DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|source| ModelError::Json { path: path.to_path_buf(), source })
}

/// burn's parameter names back to the file's (`gamma`/`beta` -> `weight`/`bias`), enum
/// variants dropped, for error messages that name the keys of the file.
fn file_key(burn_path: &str) -> String {
    let parts: Vec<&str> = burn_path.split('.').filter(|p| !matches!(*p, "Conv" | "Linear")).collect();
    let mut key = parts.join(".");
    for (from, to) in [(".gamma", ".weight"), (".beta", ".bias")] {
        if let Some(stem) = key.strip_suffix(from) {
            key = format!("{stem}{to}");
        }
    }
    key
}

/// Loads every tensor of `module` from the safetensors file at `path`; all missing,
/// unexpected and mis-shaped tensors are reported together, by name.
pub fn load_safetensors<M: Module>(module: M, path: &Path) -> Result<M, ModelError> {
    load_safetensors_remapped(module, path, &[])
}

/// [`load_safetensors`] with file keys renamed first: `(regex, replacement)` pairs, for
/// checkpoints that use older names.
pub fn load_safetensors_remapped<M: Module>(
    mut module: M,
    path: &Path,
    renames: &[(&str, &str)],
) -> Result<M, ModelError> {
    if !path.exists() {
        return Err(ModelError::Io { path: path.to_path_buf(), source: std::io::ErrorKind::NotFound.into() });
    }
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32)))
        .skip_enum_variants(true)
        .allow_partial(true);
    for (pattern, replacement) in renames {
        store = store.with_key_remapping(pattern, *replacement);
    }
    let result = module
        .load_from(&mut store)
        .map_err(|e| ModelError::WeightsFile { path: path.to_path_buf(), problem: e.to_string() })?;
    let missing: Vec<String> = result.missing.iter().map(|(p, _)| file_key(p)).collect();
    // Older transformers files carry the `position_ids` buffer: an index, not a weight.
    let unexpected: Vec<String> = result.unused.into_iter().filter(|k| !k.ends_with(".position_ids")).collect();
    let mismatched: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
    if missing.is_empty() && unexpected.is_empty() && mismatched.is_empty() {
        Ok(module)
    } else {
        Err(ModelError::Weights { path: path.to_path_buf(), missing, unexpected, mismatched })
    }
}
