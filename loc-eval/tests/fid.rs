//! FID against pytorch-fid (fixtures from `scripts/make_fid_fixtures.py`): its Inception-v3
//! with hash-generated weights (rebuilt here from `weights.json` and the same integer hash,
//! written as `scripts/convert_fid_inception.py` writes them and loaded as real weights load)
//! on two images, and `calculate_frechet_distance` on two sets of activations.

mod common;

use std::path::{Path, PathBuf};

use burn::prelude::*;
use loc_core::inception::FidInceptionV3;
use loc_core::weights::read_safetensors;
use loc_eval::metrics::fid::{FidStatistics, frechet_distance};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fid").join(name)
}

/// The features on the CPU backend and on cubecl's kernels (`common::devices`).
#[test]
fn inception_features_equal_pytorch_fid() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let folder = common::inception_folder(dir.path());
    let io = read_safetensors(&fixture("io.safetensors")).unwrap();
    // The fixture's 299x299 images: `hashed(.., 7, 0.5) + 0.5`.
    let pixels: Vec<f32> = common::hashed(2 * 3 * 299 * 299, 7, 0.5).into_iter().map(|v| v + 0.5).collect();
    for on in common::devices() {
        let model = FidInceptionV3::load(&folder, &on).unwrap();
        let images = Tensor::<4>::from_data(TensorData::new(pixels.clone(), [2, 3, 299, 299]), &on);
        let got = model.forward(images).into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        let want = io["features"].floats();
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let diff = got.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff <= 1e-4 * scale, "{on:?} features: max diff {diff} (scale {scale})");
    }

    // Smaller images are resized to 299 as `F.interpolate(bilinear, align_corners=False)` does.
    let small = Tensor::<4>::from_data(TensorData::new(io["small"].floats(), [2, 3, 48, 64]), &device);
    let resized = FidInceptionV3::resize(small);
    let every_13 = |t: Tensor<4>| {
        let index = Tensor::<1, Int>::from_data(
            TensorData::new((0..299).step_by(13).map(|i| i as i64).collect::<Vec<_>>(), [23]),
            &device,
        );
        t.select(2, index.clone()).select(3, index)
    };
    let got = every_13(resized).into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    let diff = got.iter().zip(io["resized_every_13"].floats()).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff <= 1e-5, "resize: max diff {diff}");
}

#[test]
fn the_frechet_distance_equals_pytorch_fid_with_scipy_sqrtm() {
    let bytes = std::fs::read(fixture("frechet.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f64s = |name: &str| -> Vec<f64> {
        file.tensor(name).unwrap().data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect()
    };
    let rows = |name: &str| -> Vec<Vec<f32>> {
        f64s(name).chunks(32).map(|r| r.iter().map(|&v| v as f32).collect()).collect()
    };
    let (a, b) = (FidStatistics::of(&rows("acts1")), FidStatistics::of(&rows("acts2")));
    let (got, want) = (frechet_distance(&a, &b), f64s("distance")[0]);
    assert!((got - want).abs() <= 1e-3 * want.abs(), "FID {got} vs pytorch-fid {want}");
    assert!(frechet_distance(&a, &a).abs() < 1e-9, "a set is at distance 0 from itself");
}
