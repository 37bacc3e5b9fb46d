//! Hugging Face safetensors into burn module trees, f16/bf16 files read as f32.
//!
//! Module fields are named like the diffusers / transformers keys, so loading is a name
//! mapping: PyTorch `Linear` weights are transposed for burn's own `Linear`, norms' `weight`
//! and `bias` become `gamma` and `beta`, and our LoRA layers keep the PyTorch orientation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{
    BurnToPyTorchAdapter, FloatCastAdapter, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
};
use burn::tensor::DType;
use serde::de::DeserializeOwned;

use crate::error::ModelError;

/// Writes a `config.json` (pretty, atomically); `class_name` fills diffusers' `_class_name`.
pub fn write_config<T: serde::Serialize>(path: &Path, config: &T, class_name: Option<&str>) -> Result<(), ModelError> {
    let mut value =
        serde_json::to_value(config).map_err(|source| ModelError::Json { path: path.to_path_buf(), source })?;
    if let (Some(name), Some(map)) = (class_name, value.as_object_mut()) {
        map.insert("_class_name".into(), name.into());
    }
    let text = serde_json::to_string_pretty(&value).expect("a JSON value");
    crate::lora::write_atomically(path, text.as_bytes())
        .map_err(|e| ModelError::WeightsFile { path: path.to_path_buf(), problem: e.to_string() })
}

/// Writes every tensor of `module` to `path` in the PyTorch layout the loaders read
/// (`weight`/`bias` names, PyTorch `Linear` orientation, no enum variants), atomically.
pub fn save_safetensors<M: Module>(module: &M, path: &Path) -> Result<(), ModelError> {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let partial = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let mut store =
        SafetensorsStore::from_file(&partial).with_to_adapter(BurnToPyTorchAdapter).skip_enum_variants(true);
    let err = |problem: String| ModelError::WeightsFile { path: path.to_path_buf(), problem };
    module.clone().save_into(&mut store).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&partial, path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })
}

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

/// Where a module's tensors come from: a safetensors file, or safetensors bytes built in
/// memory (a part of a single-file checkpoint, renamed) with the file they came from, which
/// errors name.
pub struct Weights {
    pub path: PathBuf,
    bytes: Option<Vec<u8>>,
}

impl Weights {
    /// Safetensors `bytes` read out of the file at `origin`.
    pub fn in_memory(bytes: Vec<u8>, origin: &Path) -> Self {
        Self { path: origin.to_path_buf(), bytes: Some(bytes) }
    }
}

impl From<&Path> for Weights {
    fn from(path: &Path) -> Self {
        Self { path: path.to_path_buf(), bytes: None }
    }
}

impl From<&PathBuf> for Weights {
    fn from(path: &PathBuf) -> Self {
        path.as_path().into()
    }
}

/// Loads every tensor of `module` from the safetensors file at `path`; all missing,
/// unexpected and mis-shaped tensors are reported together, by name.
pub fn load_safetensors<M: Module>(module: M, weights: impl Into<Weights>) -> Result<M, ModelError> {
    load_safetensors_remapped(module, weights, &[])
}

/// [`load_safetensors`] with file keys renamed first: `(regex, replacement)` pairs, for
/// checkpoints that use older names.
pub fn load_safetensors_remapped<M: Module>(
    module: M,
    weights: impl Into<Weights>,
    renames: &[(&str, &str)],
) -> Result<M, ModelError> {
    load_safetensors_part(module, weights, renames, &[])
}

/// [`load_safetensors_remapped`] for a module that is part of the file: keys starting with
/// one of `others` belong to the rest (e.g. the text tower of a full CLIP file) and are
/// left alone.
pub fn load_safetensors_part<M: Module>(
    mut module: M,
    weights: impl Into<Weights>,
    renames: &[(&str, &str)],
    others: &[&str],
) -> Result<M, ModelError> {
    let Weights { path, bytes } = weights.into();
    let path = path.as_path();
    let store = match bytes {
        Some(bytes) => SafetensorsStore::from_bytes(Some(bytes)),
        None if !path.exists() => {
            return Err(ModelError::Io { path: path.to_path_buf(), source: std::io::ErrorKind::NotFound.into() });
        }
        None => SafetensorsStore::from_file(path),
    };
    let mut store = store
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
    let unexpected: Vec<String> = result
        .unused
        .into_iter()
        .filter(|k| !k.ends_with(".position_ids") && !others.iter().any(|p| k.starts_with(p)))
        .collect();
    let mismatched: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
    if missing.is_empty() && unexpected.is_empty() && mismatched.is_empty() {
        Ok(module)
    } else {
        Err(ModelError::Weights { path: path.to_path_buf(), missing, unexpected, mismatched })
    }
}

/// One tensor of a safetensors file, as plain values: floats (F32/F16/BF16) or integers
/// (I64/I32).
#[derive(Clone, Debug)]
pub struct RawTensor {
    pub shape: Vec<usize>,
    pub values: RawValues,
}

#[derive(Clone, Debug)]
pub enum RawValues {
    Float(Vec<f32>),
    Int(Vec<i64>),
}

impl RawTensor {
    /// The values as floats (integers converted).
    pub fn floats(&self) -> Vec<f32> {
        match &self.values {
            RawValues::Float(v) => v.clone(),
            RawValues::Int(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The values as integers, `None` for a float tensor.
    pub fn ints(&self) -> Option<Vec<i64>> {
        match &self.values {
            RawValues::Int(v) => Some(v.clone()),
            RawValues::Float(_) => None,
        }
    }
}

/// Every tensor of a safetensors file (inputs and outputs of parity runs, fixtures).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, RawTensor>, ModelError> {
    use safetensors::tensor::Dtype;
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
    let file_err = |problem: String| ModelError::WeightsFile { path: path.to_path_buf(), problem };
    let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| file_err(e.to_string()))?;
    tensors
        .iter()
        .map(|(name, view)| {
            let data = view.data();
            let values = match (float_values(&view), view.dtype()) {
                (Some(floats), _) => RawValues::Float(floats),
                (None, Dtype::I64) => RawValues::Int(
                    data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))).collect(),
                ),
                (None, Dtype::I32) => RawValues::Int(
                    data.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect(),
                ),
                (None, other) => return Err(file_err(format!("`{name}` has dtype {other:?}"))),
            };
            Ok((name.to_string(), RawTensor { shape: view.shape().to_vec(), values }))
        })
        .collect()
}

/// The weights file `stem` of a diffusers or transformers folder: `{stem}.safetensors`, or
/// the fp16 variant `{stem}.fp16.safetensors` (what `variant="fp16"` downloads) when only that
/// one is there. Half-precision weights load as f32.
pub fn weights_file(dir: &Path, stem: &str) -> PathBuf {
    let plain = dir.join(format!("{stem}.safetensors"));
    let variant = dir.join(format!("{stem}.fp16.safetensors"));
    if !plain.exists() && variant.exists() { variant } else { plain }
}

/// A safetensors view's F32, F16 or BF16 values as f32 (`None` for other dtypes).
pub fn float_values(view: &safetensors::tensor::TensorView) -> Option<Vec<f32>> {
    use safetensors::tensor::Dtype;
    let data = view.data();
    match view.dtype() {
        Dtype::F32 => Some(data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
        Dtype::F16 => Some(data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
        Dtype::BF16 => Some(data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
        _ => None,
    }
}

/// f32 values as safetensors' little-endian bytes.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes f32 tensors `(name, shape, values)` to `path`, atomically.
pub fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<(), ModelError> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, v)| f32_bytes(v)).collect();
    let file_err = |problem: String| ModelError::WeightsFile { path: path.to_path_buf(), problem };
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            safetensors::tensor::TensorView::new(safetensors::tensor::Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(e.to_string()))?;
    let serialized = safetensors::serialize(views, None).map_err(|e| file_err(e.to_string()))?;
    crate::lora::write_atomically(path, &serialized).map_err(|e| file_err(e.to_string()))
}
