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
