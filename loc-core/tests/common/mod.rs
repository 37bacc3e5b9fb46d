#![allow(dead_code)]

use burn::prelude::*;
use burn::tensor::Distribution;

pub fn device() -> Device {
    let device = Device::flex();
    device.seed(7);
    device
}

pub fn randn<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

/// Largest absolute difference, after checking shapes agree.
pub fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    values(a).iter().zip(values(b)).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[track_caller]
pub fn assert_close<const D: usize>(a: Tensor<D>, b: Tensor<D>, tol: f32) {
    let scale = values(b.clone()).iter().map(|v| v.abs()).fold(1.0, f32::max);
    let diff = max_abs_diff(a, b);
    assert!(diff <= tol * scale, "max abs diff {diff} > {tol} (x{scale})");
}

/// A tensor of a reference file as `(shape, values)`; f32, f16 and i64 read as f32.
pub fn read_reference(path: &std::path::Path) -> std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> {
    use safetensors::tensor::Dtype;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    tensors
        .iter()
        .map(|(name, view)| {
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
                Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
                Dtype::I64 => data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
                other => panic!("{name}: unexpected dtype {other:?}"),
            };
            (name.to_string(), (view.shape().to_vec(), values))
        })
        .collect()
}

pub fn tensor<const D: usize>(entry: &(Vec<usize>, Vec<f32>), device: &Device) -> Tensor<D> {
    let shape: [usize; D] = entry.0.clone().try_into().expect("rank");
    Tensor::from_data(TensorData::new(entry.1.clone(), shape), device)
}

pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}
