//! CLIP-T's tokenization against OpenAI's `clip.tokenize` (open_clip's `SimpleTokenizer`: ftfy,
//! HTML unescaping, whitespace, lower case, BPE) on tricky strings, with the toy BPE of the
//! tokenizer fixture, its vocabulary built as OpenAI builds it (`scripts/make_eval_fixtures.py`).

use std::path::Path;

use burn::prelude::*;
use loc_core::clip::{
    ClipTextConfig, ClipTextModelWithProjection, ClipTokenizer, ClipVisionConfig, ClipVisionModelWithProjection,
};
use loc_eval::metrics::embedding::Clip;

#[test]
fn caption_ids_match_openai_clip_tokenize() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("tests/fixtures/openai_tokenizer/cases.json")).unwrap())
            .unwrap();
    let context = cases["context_length"].as_u64().unwrap() as usize;
    let vocab = root.join("tests/fixtures/openai_tokenizer");
    let tokenizer =
        ClipTokenizer::from_files(&vocab.join("vocab.json"), &vocab.join("merges.txt"), context, "<|endoftext|>")
            .unwrap();
    let device = Device::flex();
    let text: ClipTextConfig = serde_json::from_value(serde_json::json!({"vocab_size": 600, "hidden_size": 8,
        "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": context}))
    .unwrap();
    let vision: ClipVisionConfig = serde_json::from_value(serde_json::json!({"hidden_size": 8, "intermediate_size": 8,
        "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 8, "patch_size": 4}))
    .unwrap();
    let clip = Clip::new(
        ClipVisionModelWithProjection::new(&vision, &device),
        ClipTextModelWithProjection::new(&text, &device),
        tokenizer,
        &device,
    );
    // The end-of-text id: the empty string's second token.
    let empty = cases["cases"].as_array().unwrap().iter().find(|c| c["text"] == "").unwrap();
    let end = empty["ids"][1].as_u64().unwrap() as u32;
    for case in cases["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let expected: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let got = clip.tokenize(text);
        assert_eq!(got.len(), context);
        // Equal through the end-of-text token; OpenAI pads with 0 after it, we with the end token.
        let through_end = |ids: &[u32]| ids[..=ids.iter().position(|&t| t == end).unwrap()].to_vec();
        assert_eq!(through_end(&got), through_end(&expected), "{text:?}");
    }
}
