//! The VAE against diffusers (fixtures from `scripts/make_vae_fixtures.py`).

mod common;

use common::*;
use loc_core::vae::AutoencoderKL;

#[test]
fn encode_and_decode_match_diffusers_with_new_and_old_key_names() {
    let device = device();
    let reference = read_reference(&fixture("vae/io.safetensors"));
    for folder in ["vae", "vae_old_keys"] {
        let vae = AutoencoderKL::load(&fixture(folder), &device).unwrap();
        let dist = vae.encode(tensor(&reference["sample"], &device));
        assert_close(dist.mean.clone(), tensor(&reference["mean"], &device), 1e-4);
        assert_close(dist.logvar.clone(), tensor(&reference["logvar"], &device), 1e-4);
        assert_eq!(values(dist.mode()), values(dist.mean.clone()));
        let decoded = vae.decode(tensor(&reference["latents"], &device));
        assert_close(decoded, tensor(&reference["decoded"], &device), 1e-4);
        assert_eq!(vae.scaling_factor(), 0.18215);
    }
}

#[test]
fn sampling_uses_the_callers_noise() {
    let device = device();
    let reference = read_reference(&fixture("vae/io.safetensors"));
    let vae = AutoencoderKL::load(&fixture("vae"), &device).unwrap();
    let dist = vae.encode(tensor(&reference["sample"], &device));
    let noise = randn(dist.mean.dims(), &device);
    let expected = dist.mean.clone() + dist.logvar.clone().mul_scalar(0.5).exp() * noise.clone();
    assert_eq!(values(dist.sample(noise)), values(expected));
}

#[test]
fn a_vae_folder_with_wrong_block_types_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("vae/config.json")).unwrap()).unwrap();
    config["up_block_types"][0] = "AttnUpDecoderBlock2D".into();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let err = AutoencoderKL::load(dir.path(), &device()).unwrap_err().to_string();
    assert!(err.contains("up_block_types") && err.contains("AttnUpDecoderBlock2D"), "{err}");
}
