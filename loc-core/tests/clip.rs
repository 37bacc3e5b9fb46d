//! CLIP text encoder and tokenizer against transformers (fixtures from
//! `scripts/make_clip_fixtures.py`).

mod common;

use burn::prelude::*;
use common::*;
use loc_core::clip::{ClipTextModel, ClipTokenizer};

#[test]
fn tokenizer_ids_match_transformers_on_tricky_strings() {
    let dir = fixture("clip_tokenizer");
    let cases: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    let max_length = cases["max_length"].as_u64().unwrap() as usize;
    let tokenizer =
        ClipTokenizer::from_files(&dir.join("vocab.json"), &dir.join("merges.txt"), max_length, "<|endoftext|>")
            .unwrap();
    for case in cases["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let expected: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(tokenizer.encode(text), expected, "{text:?}");
    }
    // The folder form: no tokenizer_config.json means 77 tokens.
    assert_eq!(ClipTokenizer::load(&dir).unwrap().encode("a cat").len(), 77);
}

fn check(folder: &str) {
    let device = device();
    let reference = read_reference(&fixture(folder).join("io.safetensors"));
    let model = ClipTextModel::load(&fixture(folder), &device).unwrap();
    let (shape, ids) = &reference["input_ids"];
    let ids: Vec<i64> = ids.iter().map(|&v| v as i64).collect();
    let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [shape[0], shape[1]]), &device);
    let out = model.forward(input);
    assert_close(out.last_hidden_state, tensor(&reference["last_hidden_state"], &device), 1e-4);
    assert_close(out.pooler_output, tensor(&reference["pooler_output"], &device), 1e-4);
}

#[test]
fn quick_gelu_text_encoder_matches_transformers() {
    check("clip_text");
}

#[test]
fn gelu_text_encoder_matches_transformers() {
    check("clip_text_gelu");
}

#[test]
fn missing_tokenizer_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = ClipTokenizer::load(dir.path()).err().unwrap().to_string();
    assert!(err.contains("vocab.json"), "{err}");
}

#[test]
fn vision_tower_with_projection_matches_transformers() {
    use loc_core::clip::ClipVisionModelWithProjection;
    let device = device();
    let reference = read_reference(&fixture("clip_vision/io.safetensors"));
    let model = ClipVisionModelWithProjection::load(&fixture("clip_vision"), &device).unwrap();
    let out = model.forward(tensor(&reference["pixel_values"], &device));
    assert_close(out.last_hidden_state, tensor(&reference["last_hidden_state"], &device), 1e-4);
    assert_close(out.image_embeds, tensor(&reference["image_embeds"], &device), 1e-4);
}

/// A full CLIP folder (both towers, both projections, old-style `eos_token_id` 2): each tower
/// loads alone, leaving the other's weights in the file.
#[test]
fn full_clip_folder_towers_match_transformers() {
    use loc_core::clip::{ClipTextModelWithProjection, ClipVisionModelWithProjection};
    let device = device();
    let dir = fixture("clip_full");
    let reference = read_reference(&dir.join("io.safetensors"));
    let text = ClipTextModelWithProjection::load(&dir, &device).unwrap();
    let (shape, ids) = &reference["input_ids"];
    let ids: Vec<i64> = ids.iter().map(|&v| v as i64).collect();
    let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [shape[0], shape[1]]), &device);
    assert_close(text.forward(input), tensor(&reference["text_embeds"], &device), 1e-4);
    let vision = ClipVisionModelWithProjection::load(&dir, &device).unwrap();
    let embeds = vision.forward(tensor(&reference["pixel_values"], &device)).image_embeds;
    assert_close(embeds, tensor(&reference["image_embeds"], &device), 1e-4);
    // The unprojected text encoder reads the same folder.
    assert!(ClipTextModel::load(&dir, &device).is_ok());
    // The tokenizer beside the weights, with the context length of tokenizer_config.json.
    assert_eq!(ClipTokenizer::load(&dir).unwrap().max_length, 16);
}
