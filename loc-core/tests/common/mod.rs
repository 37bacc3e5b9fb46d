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

/// Hash-like values in `[-1, 1)`, the same on every call: inputs for tests that run beside
/// tests relying on the device's one shared generator (a draw from it in between their seeding
/// and their draw would change their numbers).
pub fn fixed<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    let count = shape.iter().product::<usize>();
    let values: Vec<f32> = (0..count).map(|i| ((i as f32 * 12.9898).sin() * 43758.547).fract()).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
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

/// Every tensor of a reference file as `(shape, values)`, integers as floats.
pub fn read_reference(path: &std::path::Path) -> std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> {
    loc_core::weights::read_safetensors(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|(name, t)| {
            let values = t.floats();
            (name, (t.shape, values))
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

/// The cubecl device of the tests: wgpu, the machine's first adapter (on a machine without a
/// GPU, Mesa's lavapipe: `apt install libvulkan1 mesa-vulkan-drivers`), with cubecl's WGSL
/// compiler. Not `vulkan` (SPIR-V): its matrix product crashes Debian 12's lavapipe
/// (vendor/UPSTREAM.md, entry 1).
pub fn cubecl() -> Device {
    loc_core::device::parse_device("wgpu").unwrap()
}
