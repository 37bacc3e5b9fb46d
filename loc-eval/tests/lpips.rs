//! LPIPS against the `lpips` package (fixtures from `scripts/make_lpips_fixtures.py`): AlexNet
//! and VGG16 backbones with hash-generated weights (rebuilt here from the same integer hash,
//! written in `scripts/convert_lpips_weights.py`'s layout and loaded as real weights load) and
//! the package's real heads.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use loc_core::weights::read_safetensors;
use loc_eval::metrics::lpips::{Lpips, LpipsNet};

mod common;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lpips").join(name)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

#[track_caller]
fn assert_close(got: &[f32], want: &[f32], tolerance: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let diff = got.iter().zip(want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff <= tolerance * scale, "{what}: max diff {diff} (scale {scale})");
}

/// On the CPU backend and on cubecl's kernels (`common::devices`).
#[test]
fn lpips_equals_the_lpips_package_for_alexnet_and_vgg16() {
    let dir = tempfile::tempdir().unwrap();
    for (device, (net, kind)) in
        common::devices().iter().flat_map(|d| [(d, ("alex", LpipsNet::Alex)), (d, ("vgg", LpipsNet::Vgg))])
    {
        let model = Lpips::load(&common::lpips_folder(net, dir.path()), device).unwrap();
        assert_eq!(model.net(), kind);
        let io = read_safetensors(&fixture(&format!("io_{net}.safetensors"))).unwrap();
        let image = |name: &str| {
            let t = &io[name];
            let shape: [usize; 4] = t.shape.clone().try_into().unwrap();
            Tensor::<4>::from_data(TensorData::new(t.floats(), shape), device)
        };
        let (a, b) = (image("in0"), image("in1"));
        for (k, tap) in model.features(a.clone()).into_iter().enumerate() {
            let [_, _, h, w] = tap.dims();
            let first = tap.narrow(0, 0, 1).narrow(1, 0, 8).reshape([8 * h * w]);
            assert_close(&values(first), &io[&format!("tap{k}")].floats(), 1e-4, &format!("{device:?} {net} tap {k}"));
        }
        assert_close(
            &values(model.distance(a, b)),
            &io["distance"].floats(),
            1e-3,
            &format!("{device:?} {net} distance"),
        );
    }
}
