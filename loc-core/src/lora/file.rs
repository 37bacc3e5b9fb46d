//! LoRA files that other tools load: kohya (ComfyUI, A1111, diffusers) and PEFT / diffusers,
//! in PyTorch layout (see `docs/formats.md`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::{LoraDelta, LoraError, LoraSet, LoraTarget};
use crate::weights::{f32_bytes, float_values};

/// The two layouts LoRA files come in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoraFormat {
    /// `lora_unet_<path with _>.lora_down.weight` / `.lora_up.weight` / `.alpha`;
    /// scale = alpha / rank; `ss_*` metadata in the header.
    Kohya,
    /// `unet.<path>.lora_A.weight` / `.lora_B.weight`; the scale folded into `lora_B`.
    Peft,
}

impl LoraFormat {
    fn name(self) -> &'static str {
        match self {
            LoraFormat::Kohya => "kohya",
            LoraFormat::Peft => "PEFT",
        }
    }

    /// (down, up) tensor suffixes.
    fn suffixes(self) -> (&'static str, &'static str) {
        match self {
            LoraFormat::Kohya => (".lora_down.weight", ".lora_up.weight"),
            LoraFormat::Peft => (".lora_A.weight", ".lora_B.weight"),
        }
    }
}

/// How one sample of a generated [`LoraSet`] becomes a file.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub format: LoraFormat,
    /// Multiplies the update (1.0 = as generated).
    pub strength: f32,
    /// Writes `-Δ` (the reverse edit).
    pub negate: bool,
    /// kohya `ss_base_model_version`.
    pub base_model_version: String,
}

impl ExportOptions {
    pub fn new(format: LoraFormat) -> Self {
        Self { format, strength: 1.0, negate: false, base_model_version: "sd_v1".to_string() }
    }
}

/// A LoRA read from a file: a single-sample set, the format it was in, and its header
/// metadata.
#[derive(Clone, Debug)]
pub struct LoraFile {
    pub format: LoraFormat,
    pub set: LoraSet,
    pub metadata: HashMap<String, String>,
}

/// Writes sample `sample` of `set` to `path` as [`lora_file_bytes`] encodes it, atomically
/// (temporary file, then rename).
pub fn save_lora(
    path: &Path,
    set: &LoraSet,
    targets: &[LoraTarget],
    sample: usize,
    options: &ExportOptions,
) -> Result<(), LoraError> {
    write_atomically(path, &lora_file_bytes(set, targets, sample, options)?)
}

/// Sample `sample` of `set` as the bytes of a LoRA file (what `save_lora` writes, for a caller
/// that sends it elsewhere).
///
/// Strength and negation are folded into `up`. kohya files get the same `alpha` for every
/// module (the largest rank), per-target scales folded into `up`: tools that read the files
/// disagree on per-module alphas, never on a shared one.
pub fn lora_file_bytes(
    set: &LoraSet,
    targets: &[LoraTarget],
    sample: usize,
    options: &ExportOptions,
) -> Result<Vec<u8>, LoraError> {
    set.check(targets)?;
    let batch_size = set.batch_size().unwrap_or(0);
    if sample >= batch_size {
        return Err(LoraError::SampleOutOfRange { sample, batch_size });
    }
    let sign = if options.negate { -1.0 } else { 1.0 };
    let max_rank = set.iter().map(|(_, d)| d.rank()).max().unwrap_or(0);
    let alpha = max_rank as f32;
    let (down_suffix, up_suffix) = options.format.suffixes();

    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for target in targets {
        let Some(delta) = set.get(&target.path) else { continue };
        let delta = delta.clone().select(&[sample]);
        let rank = delta.rank();
        let mut factor = delta.scale * options.strength * sign;
        let name = match options.format {
            LoraFormat::Kohya => {
                factor *= rank as f32 / alpha;
                tensors.push((format!("{}.alpha", target.kohya_name()), Dtype::F32, vec![], f32_bytes(&[alpha])));
                target.kohya_name()
            }
            LoraFormat::Peft => target.peft_name(),
        };
        let down = tensor_values(delta.down);
        let up = tensor_values(delta.up.mul_scalar(factor));
        tensors.push((format!("{name}{down_suffix}"), Dtype::F32, target.down_shape(rank), f32_bytes(&down)));
        tensors.push((format!("{name}{up_suffix}"), Dtype::F32, target.up_shape(rank), f32_bytes(&up)));
    }

    let views = tensors
        .iter()
        .map(|(key, dtype, shape, bytes)| Ok((key.clone(), TensorView::new(*dtype, shape.clone(), bytes)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(LoraError::Encode)?;
    let mut metadata = HashMap::from([
        ("loc_strength".to_string(), options.strength.to_string()),
        ("loc_negated".to_string(), options.negate.to_string()),
    ]);
    if options.format == LoraFormat::Kohya {
        metadata.extend([
            ("ss_network_module".to_string(), "networks.lora".to_string()),
            ("ss_network_dim".to_string(), max_rank.to_string()),
            ("ss_network_alpha".to_string(), alpha.to_string()),
            ("ss_base_model_version".to_string(), options.base_model_version.clone()),
        ]);
    }
    safetensors::serialize(views, Some(metadata)).map_err(LoraError::Encode)
}

/// Reads a kohya or PEFT LoRA file (detected from its keys) for a model with `targets`.
///
/// Every tensor must belong to a known target and have the shape that target implies; the
/// error names the key (and both shapes). F16 and BF16 files are read as f32.
pub fn load_lora(path: &Path, targets: &[LoraTarget], device: &Device) -> Result<LoraFile, LoraError> {
    let bytes = std::fs::read(path).map_err(|source| LoraError::Io { path: path.to_path_buf(), source })?;
    let safetensors_err = |source| LoraError::Safetensors { path: path.to_path_buf(), source };
    let tensors = SafeTensors::deserialize(&bytes).map_err(safetensors_err)?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(safetensors_err)?;
    let metadata = header.metadata().clone().unwrap_or_default();

    let names = tensors.names();
    let format = if names.iter().any(|k| k.ends_with(".lora_down.weight")) {
        LoraFormat::Kohya
    } else if names.iter().any(|k| k.ends_with(".lora_A.weight")) {
        LoraFormat::Peft
    } else {
        return Err(LoraError::NotALoraFile { path: path.to_path_buf() });
    };
    let file = FileReader { path, tensors: &tensors, format };

    let by_module: HashMap<String, &LoraTarget> =
        targets.iter().flat_map(|t| file.module_names(t).into_iter().map(move |n| (n, t))).collect();
    let (down_suffix, up_suffix) = format.suffixes();
    let mut found: Vec<(&str, &LoraTarget)> = Vec::new();
    for key in names {
        let module = [down_suffix, up_suffix, ".alpha"]
            .iter()
            .filter(|s| format == LoraFormat::Kohya || **s != ".alpha")
            .find_map(|s| key.strip_suffix(s))
            .ok_or_else(|| LoraError::UnexpectedKey {
                path: path.to_path_buf(),
                key: key.to_string(),
                format: format.name(),
            })?;
        let target = by_module
            .get(module)
            .ok_or_else(|| LoraError::UnknownTarget { path: path.to_path_buf(), key: key.to_string() })?;
        if !found.iter().any(|(m, _)| *m == module) {
            found.push((module, target));
        }
    }

    let mut set = LoraSet::new();
    for (module, target) in found {
        let down_key = format!("{module}{down_suffix}");
        let down = file.read(&down_key)?;
        let rank = *down.shape.first().unwrap_or(&0);
        file.expect_shape(&down_key, &down.shape, &target.down_shape(rank))?;
        let up_key = format!("{module}{up_suffix}");
        let up = file.read(&up_key)?;
        file.expect_shape(&up_key, &up.shape, &target.up_shape(rank))?;
        let alpha_key = format!("{module}.alpha");
        let scale = match format {
            LoraFormat::Kohya if tensors.tensor(&alpha_key).is_ok() => {
                let alpha = file.read(&alpha_key)?;
                file.expect_shape(&alpha_key, &alpha.shape, &[])?;
                alpha.values[0] / rank as f32
            }
            _ => 1.0,
        };
        let down = Tensor::<1>::from_data(TensorData::new(down.values, [rank * target.d_in]), device).reshape([
            1,
            rank,
            target.d_in,
        ]);
        let up = Tensor::<1>::from_data(TensorData::new(up.values, [target.d_out * rank]), device).reshape([
            1,
            target.d_out,
            rank,
        ]);
        set.insert(target.path.clone(), LoraDelta::new(down, up, scale));
    }
    Ok(LoraFile { format, set, metadata })
}

struct FileTensor {
    shape: Vec<usize>,
    values: Vec<f32>,
}

struct FileReader<'a> {
    path: &'a Path,
    tensors: &'a SafeTensors<'a>,
    format: LoraFormat,
}

impl FileReader<'_> {
    /// The module names a target may carry in this format. PEFT files saved by diffusers use
    /// `unet.`, by `peft` itself `base_model.model.`, and bare paths are accepted too.
    fn module_names(&self, target: &LoraTarget) -> Vec<String> {
        match self.format {
            LoraFormat::Kohya => vec![target.kohya_name()],
            LoraFormat::Peft => {
                vec![target.peft_name(), format!("base_model.model.{}", target.path), target.path.clone()]
            }
        }
    }

    fn read(&self, key: &str) -> Result<FileTensor, LoraError> {
        let view = self
            .tensors
            .tensor(key)
            .map_err(|_| LoraError::MissingTensor { path: self.path.to_path_buf(), key: key.to_string() })?;
        let values = float_values(&view).ok_or_else(|| LoraError::UnsupportedDtype {
            path: self.path.to_path_buf(),
            key: key.to_string(),
            dtype: format!("{:?}", view.dtype()),
        })?;
        Ok(FileTensor { shape: view.shape().to_vec(), values })
    }

    fn expect_shape(&self, key: &str, found: &[usize], expected: &[usize]) -> Result<(), LoraError> {
        if found == expected {
            Ok(())
        } else {
            Err(LoraError::ShapeMismatch {
                path: self.path.to_path_buf(),
                key: key.to_string(),
                expected: expected.to_vec(),
                found: found.to_vec(),
            })
        }
    }
}

fn tensor_values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 tensor data")
}

/// Writes `bytes` next to `path`, then renames: a reader never sees half a file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), LoraError> {
    let io_err = |source| LoraError::Io { path: path.to_path_buf(), source };
    let mut tmp = PathBuf::from(path);
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    tmp.set_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io_err)?;
    std::fs::rename(&tmp, path).map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        io_err(source)
    })
}
