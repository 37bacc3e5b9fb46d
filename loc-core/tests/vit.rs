//! transformers `ViTModel` (DINO's layout) against transformers (fixture from
//! `scripts/make_eval_fixtures.py`: a checkpoint that carries the pooler DINO files have).

mod common;

use common::*;
use loc_core::vit::{ViTConfig, ViTModel};

#[test]
fn vit_matches_transformers() {
    let device = device();
    let dir = fixture("vit_dino");
    let reference = read_reference(&dir.join("io.safetensors"));
    let model = ViTModel::load(&dir, &device).unwrap();
    let pixels = tensor(&reference["pixel_values"], &device);
    assert_close(model.forward(pixels.clone()), tensor(&reference["last_hidden_state"], &device), 1e-4);
    assert_close(model.cls(pixels), tensor(&reference["cls"], &device), 1e-4);
}

#[test]
fn bad_vit_configs_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = serde_json::to_value(ViTConfig::dino_vits16()).unwrap();
    config["num_attention_heads"] = 5.into();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let err = ViTModel::load(dir.path(), &device()).err().unwrap().to_string();
    assert!(err.contains("num_attention_heads") && err.contains("config.json"), "{err}");
}
