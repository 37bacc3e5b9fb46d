//! Where models run and in what precision: the one place a device is named from text
//! (`--device`, `[train] device`). Everything else takes a `&Device` from its caller.

use std::fmt;
use std::str::FromStr;

use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};
use serde::{Deserialize, Serialize};

/// A device name that cannot be used in this build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "unknown device `{0}`: use cpu, cuda, cuda:N, wgpu, wgpu:N, vulkan or vulkan:N \
         (N: the GPU's index)"
    )]
    Unknown(String),
    #[error("device `{spec}` needs a build with the `{feature}` cargo feature (`cargo build --features {feature}`)")]
    NotCompiled { spec: String, feature: &'static str },
    #[error("precision `{0}` is not one of f32, bf16, f16")]
    Precision(String),
    #[error("device `{device}` cannot compute in {precision}")]
    Unsupported { device: String, precision: Precision },
}

/// Parses `cpu`, `cuda`, `cuda:1`, `wgpu`, `wgpu:0`, `vulkan`, `vulkan:0`. A backend that is
/// not compiled in is an error that names the cargo feature to enable.
pub fn parse_device(spec: &str) -> Result<Device, DeviceError> {
    let (kind, index) = match spec.split_once(':') {
        Some((kind, index)) => {
            let index = index.parse::<usize>().map_err(|_| DeviceError::Unknown(spec.into()))?;
            (kind, Some(index))
        }
        None => (spec, None),
    };
    let not_compiled = |feature| DeviceError::NotCompiled { spec: spec.into(), feature };
    match kind {
        "cpu" | "flex" if index.is_none() => Ok(Device::flex()),
        "cuda" => cuda(index).ok_or_else(|| not_compiled("cuda")),
        "wgpu" => wgpu(index).ok_or_else(|| not_compiled("wgpu")),
        "vulkan" => vulkan(index).ok_or_else(|| not_compiled("vulkan")),
        _ => Err(DeviceError::Unknown(spec.into())),
    }
}

#[cfg(feature = "cuda")]
fn cuda(index: Option<usize>) -> Option<Device> {
    Some(Device::cuda(index.unwrap_or(0)))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_: Option<usize>) -> Option<Device> {
    None
}

#[cfg(feature = "wgpu")]
fn gpu_kind(index: Option<usize>) -> burn::tensor::DeviceKind {
    index.map_or(burn::tensor::DeviceKind::DefaultDevice, burn::tensor::DeviceKind::DiscreteGpu)
}

#[cfg(feature = "wgpu")]
fn wgpu(index: Option<usize>) -> Option<Device> {
    Some(Device::wgpu(gpu_kind(index)))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(_: Option<usize>) -> Option<Device> {
    None
}

#[cfg(feature = "vulkan")]
fn vulkan(index: Option<usize>) -> Option<Device> {
    Some(Device::vulkan(gpu_kind(index)))
}

#[cfg(not(feature = "vulkan"))]
fn vulkan(_: Option<usize>) -> Option<Device> {
    None
}

/// What runs on `device`, for logs: the CPU backend, or a cubecl runtime with its shader
/// compiler and the adapter it opened (`wgpu<spirv> on NVIDIA H200`). cubecl falls back from
/// SPIR-V to WGSL without a word, so a run says which it got. Opens the device.
pub fn describe(device: &Device) -> String {
    #[cfg(any(feature = "cuda", feature = "wgpu", feature = "vulkan"))]
    if let Some(runtime) = cubecl_runtime(device.clone().inner().as_dispatch()) {
        let adapter = device.identity().map_or_else(|| "an unnamed adapter".into(), |id| id.name);
        return format!("{runtime} on {adapter}");
    }
    format!("{device:?}")
}

#[cfg(any(feature = "cuda", feature = "wgpu", feature = "vulkan"))]
fn cubecl_runtime(device: &burn::backend::DispatchDevice) -> Option<&'static str> {
    use burn::backend::DispatchDevice;
    match device {
        DispatchDevice::Cube(cube) => Some(cube.client().name()),
        _ => None,
    }
}

/// The dtype the frozen models are stored and run in. `H`, its optimiser state and the loss
/// stay f32 whatever this is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
    F16,
}

impl Precision {
    pub fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::Bf16 => FloatDType::BF16,
            Precision::F16 => FloatDType::F16,
        }
    }

    /// An error when `device` cannot compute in this precision.
    pub fn check(self, device: &Device) -> Result<(), DeviceError> {
        if device.supports_dtype(self.dtype()) {
            Ok(())
        } else {
            Err(DeviceError::Unsupported { device: format!("{device:?}"), precision: self })
        }
    }
}

/// `module` with every float parameter stored in `precision` (for frozen models: ids and
/// gradient flags are kept).
pub fn cast_module<M: Module>(module: M, precision: Precision) -> M {
    struct Cast(FloatDType);
    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            param.map(|tensor| tensor.cast(dtype))
        }
    }
    if precision == Precision::F32 {
        return module;
    }
    module.map(&mut Cast(precision.dtype()))
}

/// `x` in `dtype`: a model's entry casts its inputs to its weights' dtype.
pub fn to_dtype<const D: usize>(x: Tensor<D>, dtype: DType) -> Tensor<D> {
    if x.dtype() == dtype { x } else { x.cast(dtype) }
}

/// `x` in f32: a model's exit, so that losses, guidance and metrics stay f32.
pub fn to_f32<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    to_dtype(x, DType::F32)
}

impl FromStr for Precision {
    type Err = DeviceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            "f16" => Ok(Precision::F16),
            _ => Err(DeviceError::Precision(text.into())),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_or_say_what_is_missing() {
        assert_eq!(parse_device("cpu").unwrap(), Device::flex());
        assert!(matches!(parse_device("tpu"), Err(DeviceError::Unknown(_))));
        assert!(matches!(parse_device("cuda:x"), Err(DeviceError::Unknown(_))));
        assert!(matches!(parse_device("cpu:1"), Err(DeviceError::Unknown(_))));
        if !cfg!(feature = "cuda") {
            let error = parse_device("cuda:1").unwrap_err();
            assert_eq!(error, DeviceError::NotCompiled { spec: "cuda:1".into(), feature: "cuda" });
            assert!(error.to_string().contains("--features cuda"), "{error}");
        }
        if !cfg!(feature = "vulkan") {
            assert!(matches!(parse_device("vulkan:0"), Err(DeviceError::NotCompiled { feature: "vulkan", .. })));
        }
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert!("fp8".parse::<Precision>().is_err());
    }
}
