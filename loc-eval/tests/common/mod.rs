//! A tiny LoC checkpoint and test images, shared by the command tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::nn::LinearConfig;
use burn::prelude::*;
use image::{DynamicImage, ImageBuffer, Luma, RgbImage, Rgba};
use loc_core::checkpoint::{CheckpointManifest, save_checkpoint};
use loc_core::hypernet::{DEFAULT_TARGET_SUFFIXES, HypernetShape, select_targets};
use loc_core::unet::UNet2DConditionModel;
use loc_core::weights::{read_safetensors, write_safetensors};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../loc-core/tests/fixtures").join(name).canonicalize().unwrap()
}

/// A checkpoint whose `H` has random (non-zero) `up` heads, and three images of assorted
/// sizes and colour types.
pub fn setup(dir: &Path) -> (PathBuf, [PathBuf; 3]) {
    let device = Device::flex();
    device.seed(5);
    let unet = UNet2DConditionModel::load(&fixture("tiny_ip2p").join("unet"), &device).unwrap();
    let targets = select_targets(&unet.lora_targets(), &DEFAULT_TARGET_SUFFIXES);
    let config = HypernetShape { width: 32, heads: 4, depth: 2, ..Default::default() }.config(12);
    let mut hyper = config.init(&targets, &device);
    for head in &mut hyper.heads {
        head.up = LinearConfig::new(32, head.d_out * 4).init(&device);
    }
    let manifest = CheckpointManifest {
        format_version: 1,
        editor: fixture("tiny_ip2p"),
        image_encoder: fixture("clip_vision"),
        hypernet: config,
        target_suffixes: DEFAULT_TARGET_SUFFIXES.iter().map(|s| s.to_string()).collect(),
        resolution: 16,
        step: 0,
    };
    let checkpoint = dir.join("checkpoint");
    save_checkpoint(&checkpoint, &manifest, &hyper).unwrap();

    let images = [dir.join("before.png"), dir.join("after.png"), dir.join("query.png")];
    DynamicImage::ImageLuma8(ImageBuffer::from_fn(30, 20, |x, y| Luma([(x * 8 + y) as u8]))).save(&images[0]).unwrap();
    DynamicImage::ImageRgba8(ImageBuffer::from_fn(25, 25, |x, y| Rgba([(x * 9) as u8, (y * 9) as u8, 90, 255])))
        .save(&images[1])
        .unwrap();
    RgbImage::from_fn(20, 12, |x, y| image::Rgb([(x * 12) as u8, 40, (y * 20) as u8])).save(&images[2]).unwrap();
    (checkpoint, images)
}

/// Runs `loc-eval` with `args` and `(flag, path)` pairs; it must succeed.
pub fn run(args: &[&str], paths: &[(&str, &Path)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loc-eval"));
    command.args(args);
    for (flag, path) in paths {
        command.arg(flag).arg(path);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output
}

/// The fixture script's `hashed`: `((h / 2^32 - 0.5) * 2) * bound` for
/// `h = (i * 2654435761 + seed * 40503) mod 2^32`, in f64, then f32.
pub fn hashed(count: usize, seed: u64, bound: f64) -> Vec<f32> {
    (0..count as u64)
        .map(|i| {
            let h = (i * 2_654_435_761 + seed * 40_503) % (1 << 32);
            ((h as f64 / (1u64 << 32) as f64 - 0.5) * 2.0 * bound) as f32
        })
        .collect()
}

/// An LPIPS weights folder for `net` (`alex`, `vgg`) under `dir`, as
/// `scripts/make_lpips_fixtures.py` builds it: hashed convolutions, the package's real heads.
pub fn lpips_folder(net: &str, dir: &Path) -> PathBuf {
    let convs: Vec<[usize; 3]> = match net {
        "alex" => vec![[3, 64, 11], [64, 192, 5], [192, 384, 3], [384, 256, 3], [256, 256, 3]],
        _ => [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
            .iter()
            .scan(3, |c_in, &c_out| Some([std::mem::replace(c_in, c_out), c_out, 3]))
            .collect(),
    };
    let folder = dir.join(net);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("config.json"), format!("{{\"net\": \"{net}\"}}")).unwrap();
    let mut tensors = Vec::new();
    for (k, &[c_in, c_out, kernel]) in convs.iter().enumerate() {
        let fan_in = c_in * kernel * kernel;
        let bound = (6.0 / fan_in as f64).sqrt();
        let shape = vec![c_out, c_in, kernel, kernel];
        tensors.push((format!("convs.{k}.weight"), shape, hashed(c_out * fan_in, 2 * k as u64 + 1, bound)));
        tensors.push((format!("convs.{k}.bias"), vec![c_out], hashed(c_out, 2 * k as u64 + 2, 0.05)));
    }
    for (key, tensor) in read_safetensors(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/lpips/lins_{net}.safetensors")),
    )
    .unwrap()
    {
        tensors.push((key, tensor.shape.clone(), tensor.floats()));
    }
    write_safetensors(&folder.join("model.safetensors"), &tensors).unwrap();
    folder
}

/// pytorch-fid's Inception-v3 with `scripts/make_fid_fixtures.py`'s hashed weights (the `i`-th
/// tensor of `weights.json` from seed `i + 1`) under `dir`.
pub fn inception_folder(dir: &Path) -> PathBuf {
    let list: Vec<(String, Vec<usize>)> = serde_json::from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fid/weights.json")).unwrap(),
    )
    .unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = list
        .into_iter()
        .enumerate()
        .map(|(i, (key, shape))| {
            let count = shape.iter().product();
            let seed = i as u64 + 1;
            let values = if key.ends_with("bn.weight") || key.ends_with("running_var") {
                hashed(count, seed, 0.1).into_iter().map(|v| 1.0 + v).collect()
            } else if key.ends_with("bn.bias") || key.ends_with("running_mean") || key == "fc.bias" {
                hashed(count, seed, 0.01)
            } else {
                let fan_in: usize = shape[1..].iter().product();
                hashed(count, seed, (6.0 / fan_in as f64).sqrt())
            };
            (key, shape, values)
        })
        .collect();
    let folder = dir.join("inception");
    std::fs::create_dir_all(&folder).unwrap();
    write_safetensors(&folder.join("model.safetensors"), &tensors).unwrap();
    folder
}

/// The CPU backend and cubecl's kernels (wgpu with its WGSL compiler: Mesa's lavapipe on a
/// machine without a GPU; see `cubecl()` in loc-core's tests), for tests that hold both to a
/// reference.
pub fn devices() -> [Device; 2] {
    [Device::flex(), loc_core::device::parse_device("wgpu").unwrap()]
}
