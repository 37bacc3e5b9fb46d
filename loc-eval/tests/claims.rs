//! The paper's smaller claims (`loc-eval claims`): the world items each claim is measured on,
//! and the measurements' plumbing, with a LoRA that cannot matter (zero) and one that does
//! (the tiny checkpoint's random `H`).

mod common;

use burn::prelude::*;
use common::{run, setup};
use loc_core::checkpoint::LocModel;
use loc_core::lora::{LoraDelta, LoraSet, LoraTarget};
use loc_core::pipeline::{EditOptions, Sampling};
use loc_eval::claims::{ClaimSizes, ClaimsEval, couples, held_out_world, norm_matched_sum, reuse_groups};
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
    assert!([c.pixel_only, c.sum, c.mean, c.norm_matched].iter().all(|&v| v == c.scene_only), "{c:?}");
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
    assert!(c.mean != c.sum && c.norm_matched != c.sum && c.norm_matched != c.mean, "{c:?}");
}

/// The norm-matched sum keeps each target's sum direction at the larger of the two norms.
#[test]
fn the_norm_matched_sum_has_the_larger_norm_and_the_sums_direction() {
    let device = Device::flex();
    let target = |path: &str| LoraTarget::linear(path, 5, 6);
    let targets = [target("a.to_q"), target("b.to_v")];
    device.seed(3);
    let random = |scale: f32| -> LoraSet {
        targets
            .iter()
            .map(|t| {
                let init =
                    |shape: [usize; 3]| Tensor::random(shape, burn::tensor::Distribution::Normal(0.0, 1.0), &device);
                (t.path.clone(), LoraDelta::new(init([2, 3, 5]), init([2, 6, 3]), scale))
            })
            .collect()
    };
    let (a, b) = (random(1.0), random(0.4));
    let matched = norm_matched_sum(&a, &b);
    let values = |t: Tensor<3>| t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    for t in &targets {
        let norms = |set: &LoraSet| values(set.get(&t.path).unwrap().frobenius_norms().reshape([2, 1, 1]));
        let (na, nb, nm) = (norms(&a), norms(&b), norms(&matched));
        let sum = (a.clone() + b.clone()).get(&t.path).unwrap().weight_delta();
        let (sum, got) = (values(sum), values(matched.get(&t.path).unwrap().weight_delta()));
        for n in 0..2 {
            assert!((nm[n] - na[n].max(nb[n])).abs() < 1e-4 * nm[n], "{}: {} vs {} / {}", t.path, nm[n], na[n], nb[n]);
            // The same direction: got = sum * (norm / |sum|) elementwise.
            let (s, g) = (&sum[n * 30..(n + 1) * 30], &got[n * 30..(n + 1) * 30]);
            let ratio = g[0] / s[0];
            assert!(ratio > 0.0 && s.iter().zip(g).all(|(s, g)| (s * ratio - g).abs() < 1e-4 * (1.0 + g.abs())));
        }
    }
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
