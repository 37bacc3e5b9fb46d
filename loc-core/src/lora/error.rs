use std::path::PathBuf;

/// What can go wrong with LoRA sets, merges and files. Every variant names the file, key or
/// target path at fault.
#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a valid safetensors file: {source}", path.display())]
    Safetensors { path: PathBuf, source: safetensors::SafeTensorError },
    #[error("{}: no `lora_down`/`lora_up` (kohya) or `lora_A`/`lora_B` (PEFT) tensors found", path.display())]
    NotALoraFile { path: PathBuf },
    #[error("encoding a LoRA file: {0}")]
    Encode(safetensors::SafeTensorError),
    #[error("{}: `{key}` names a layer that is not a LoRA target of this model", path.display())]
    UnknownTarget { path: PathBuf, key: String },
    #[error("{}: unexpected tensor `{key}` in a {format} LoRA file", path.display())]
    UnexpectedKey { path: PathBuf, key: String, format: &'static str },
    #[error("{}: `{key}` has shape {found:?}, the model expects {expected:?}", path.display())]
    ShapeMismatch { path: PathBuf, key: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("{}: `{key}` is missing", path.display())]
    MissingTensor { path: PathBuf, key: String },
    #[error("{}: `{key}` has dtype {dtype}; F32, F16 and BF16 are supported", path.display())]
    UnsupportedDtype { path: PathBuf, key: String, dtype: String },
    #[error("LoRA set names `{path}`, which is not a target of this model")]
    UnknownPath { path: String },
    #[error("LoRA delta for `{target}` is [d_out, d_in] = {found:?}, the target is {expected:?}")]
    DeltaMismatch { target: String, expected: [usize; 2], found: [usize; 2] },
    #[error("sample {sample} requested from a LoRA set of {batch_size} samples")]
    SampleOutOfRange { sample: usize, batch_size: usize },
    #[error("LoRA merge failed:\n  {}", problems.join("\n  "))]
    Merge { problems: Vec<String> },
}
