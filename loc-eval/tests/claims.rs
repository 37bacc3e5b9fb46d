//! The paper's smaller claims (`loc-eval claims`): the world items each claim is measured on,
//! and the measurements' plumbing, with a LoRA that cannot matter (zero) and one that does
//! (the tiny checkpoint's random `H`).

mod common;

use burn::prelude::*;
use common::{run, setup};
use loc_core::checkpoint::LocModel;
use loc_core::lora::LoraSet;
use loc_core::pipeline::{EditOptions, Sampling};
use loc_eval::claims::{ClaimSizes, ClaimsEval, couples, held_out_world, reuse_groups};
use loc_eval::metrics::pixel::distances;

const SIZES: ClaimSizes = ClaimSizes { groups: 2, queries: 3, reverse: 3, compose: 3 };

fn options() -> EditOptions {
    EditOptions::new(Sampling { steps: 2, text_guidance: 1.0, image_guidance: 1.0, lora_guidance: None }, 3)
}

#[test]
fn each_claim_is_measured_on_the_edit_it_names() {
    let world = held_out_world(16, 7);
    let groups = reuse_groups(&world, 4, 5);
    assert_eq!(groups.len(), 4);
    for group in &groups {
        assert_eq!((group.queries.len(), group.targets.len(), group.own_examples.len()), (5, 5, 5));
        // Each query's own example is another scene than the group's example.
        assert!(group.own_examples.iter().all(|(before, _)| before != &group.example.0));
        assert!(group.queries.iter().zip(&group.targets).any(|(query, target)| query != target));
    }
    let couples = couples(&world, 6);
    assert_eq!(couples.len(), 6);
    for couple in &couples {
        // Both edits change what they are shown on, and the query.
        assert_ne!(couple.target, couple.query);
        assert_ne!(couple.scene_pair.0, couple.scene_pair.1);
        assert_ne!(couple.pixel_pair.0, couple.pixel_pair.1);
    }
}

#[test]
fn the_variants_differ_only_through_the_lora() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, _) = setup(dir.path());
    let device = Device::flex();
    let model = LocModel::load(&checkpoint, &device).unwrap();
    let targets = model.hypernet.targets.clone();
    let zero = |a: Tensor<4>, _: Tensor<4>| LoraSet::zeros(&targets, a.dims()[0], 2, &device);
    let eval = ClaimsEval { editor: &model.editor, generator: &zero, options: options(), prompt: "", device: &device };
    let world = held_out_world(16, 0);
    let claims = eval.evaluate(&world, SIZES);
    assert_eq!(claims.reuse.per_query, claims.reuse.reused);
    assert_eq!(claims.reverse.back_to_query, claims.reverse.null_to_query);
    let c = &claims.compose;
    assert!(c.scene_only == c.pixel_only && c.pixel_only == c.sum, "{c:?}");
    // Do-nothing is the query itself.
    let groups = reuse_groups(&world, SIZES.groups, SIZES.queries);
    let expected: Vec<f64> =
        groups.iter().flat_map(|g| g.queries.iter().zip(&g.targets).map(|(q, t)| distances(q, t).1)).collect();
    let expected = expected.iter().sum::<f64>() / expected.len() as f64;
    assert!((claims.reuse.do_nothing - expected).abs() < 1e-12);

    // The checkpoint's random H: the pair shown now matters, and so does the sign of Δ.
    let generate = |a, a_edited| model.generate(a, a_edited);
    let eval = ClaimsEval { generator: &generate, ..eval };
    let claims = eval.evaluate(&world, SIZES);
    assert_ne!(claims.reuse.per_query, claims.reuse.reused);
    assert_ne!(claims.reverse.back_to_query, claims.reverse.null_to_query);
    let c = &claims.compose;
    assert!(c.sum != c.scene_only && c.sum != c.pixel_only, "{c:?}");
}

#[test]
fn the_claims_command_writes_every_claim() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, _) = setup(dir.path());
    let out = dir.path().join("claims");
    let sizes = ["--groups", "2", "--queries", "2", "--reverse", "2", "--compose", "2", "--steps", "2"];
    run(
        &[&["claims", "--lora-in-every-branch"], &sizes[..]].concat(),
        &[("--checkpoint", &checkpoint), ("--out", &out)],
    );
    let claims: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("claims.json")).unwrap()).unwrap();
    assert_eq!(claims["reuse"]["queries"], 2);
    assert_eq!(claims["compose"]["couples"], 2);
    for (section, key) in [("reuse", "reused"), ("reverse", "back_to_query"), ("compose", "sum")] {
        let value = claims[section][key].as_f64().unwrap();
        assert!(value.is_finite() && value >= 0.0, "{section}.{key} {value}");
    }
    assert!(out.join("claims.md").exists());
}
