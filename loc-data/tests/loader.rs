//! Mixing, validation split, parallel decoding with skips, determinism by step.

mod common;

use std::sync::Arc;

use burn::prelude::*;
use burn_dataset::Dataset;
use common::*;
use loc_data::SkipKind;
use loc_data::loader::{PairBatch, PairLoader, Source, split_indices};
use loc_data::manifest::Manifest;
use loc_data::pipeline::Preprocess;
use loc_data::world::{SyntheticWorld, WorldSplit};

fn world(len: usize) -> Arc<dyn Dataset<loc_data::PairRecord>> {
    Arc::new(SyntheticWorld::new(16, 9, len, WorldSplit::Train))
}

#[test]
fn the_validation_split_is_disjoint_complete_and_fixed_by_seed() {
    let (train, val) = split_indices(10_000, 0.1, 42);
    assert_eq!(train.len() + val.len(), 10_000);
    assert!((900..1100).contains(&val.len()), "{}", val.len());
    assert!(train.iter().all(|i| val.binary_search(i).is_err()));
    assert_eq!(split_indices(10_000, 0.1, 42).1, val);
    assert_ne!(split_indices(10_000, 0.1, 43).1, val);
    // Growing the data set keeps every earlier decision.
    let (_, bigger) = split_indices(20_000, 0.1, 42);
    assert_eq!(&bigger[..val.len()], val.as_slice());
    assert!(split_indices(100, 0.0, 1).1.is_empty());
}

#[test]
fn batches_are_a_function_of_the_step_and_mix_by_weight() {
    let sources =
        vec![Source::new("a", world(50), 3.0), Source::new("b", world(50), 1.0), Source::new("zero", world(50), 0.0)];
    let mut sources_b = vec![Source::new("a", world(50), 3.0), Source::new("b", world(50), 1.0)];
    sources_b.push(Source { indices: vec![], ..Source::new("empty", world(50), 5.0) });
    let loader = PairLoader::new(sources, Preprocess::new(16), 64, 7, 2);
    let one_thread = PairLoader::new(sources_b, Preprocess::new(16), 64, 7, 1);
    let batch = loader.batch(3).unwrap();
    assert_eq!(batch.len(), 64);
    let ids: Vec<String> = batch.iter().map(|p| p.id.clone()).collect();
    assert_eq!(ids, loader.batch(3).unwrap().iter().map(|p| p.id.clone()).collect::<Vec<_>>());
    assert_ne!(ids, loader.batch(4).unwrap().iter().map(|p| p.id.clone()).collect::<Vec<_>>());
    assert_eq!(batch[0].before, loader.batch(3).unwrap()[0].before);
    // An empty source is never drawn, whatever its weight; one thread gives the same batch.
    assert_eq!(one_thread.batch(3).unwrap().iter().map(|p| p.id.clone()).collect::<Vec<_>>(), ids);

    // Slots draw from the sources by weight: 3 : 1 between a train and a held-out world.
    let tagged = PairLoader::new(
        vec![
            Source::new("a", world(50), 3.0),
            Source::new("b", Arc::new(SyntheticWorld::new(16, 9, 50, WorldSplit::HeldOut)), 1.0),
        ],
        Preprocess::new(16),
        64,
        7,
        2,
    );
    let held_out = (0..10).flat_map(|step| tagged.batch(step).unwrap()).filter(|p| p.id.contains("held-out")).count();
    assert!((110..210).contains(&held_out), "weight 3:1 gave {held_out} of 640 from the second source");

    let tensors = PairBatch::from_pairs(&batch, &Device::flex());
    assert_eq!(tensors.before.dims(), [64, 3, 16, 16]);
    assert_eq!(tensors.instructions.len(), 64);
}

#[test]
fn broken_images_are_skipped_counted_and_replaced_and_all_broken_stops() {
    let dir = tempfile::tempdir().unwrap();
    write_png(&dir.path().join("good_a.png"), 10);
    write_png(&dir.path().join("good_b.png"), 20);
    std::fs::write(dir.path().join("corrupt.png"), b"\x89PNG garbage").unwrap();
    let manifest = dir.path().join("m.jsonl");
    write_lines(
        &manifest,
        &[
            r#"{"before": "good_a.png", "after": "good_b.png", "id": "good"}"#.into(),
            r#"{"before": "corrupt.png", "after": "good_b.png", "id": "corrupt"}"#.into(),
            r#"{"before": "missing.png", "after": "good_b.png", "id": "missing"}"#.into(),
        ],
    );
    let loader = Arc::new(PairLoader::new(
        vec![Source::new("m", Arc::new(Manifest::open(&manifest).unwrap()), 1.0)],
        Preprocess::new(8),
        16,
        1,
        2,
    ));
    let batch = loader.batch(0).unwrap();
    assert!(batch.iter().all(|p| p.id == "good"));
    assert!(
        loader.skips.count(SkipKind::CorruptImage) > 0 && loader.skips.count(SkipKind::MissingFile) > 0,
        "{}",
        loader.skips
    );

    // Prefetching gives the same batches, ahead of the consumer.
    let ahead = loader.clone().prefetch(0, 2);
    let first = ahead.recv().unwrap().unwrap();
    assert_eq!(first.iter().map(|p| &p.id).collect::<Vec<_>>(), batch.iter().map(|p| &p.id).collect::<Vec<_>>());
    assert_eq!(first[0].before, batch[0].before);

    let broken = dir.path().join("broken.jsonl");
    write_lines(&broken, &[r#"{"before": "corrupt.png", "after": "missing.png"}"#.into()]);
    let loader = PairLoader::new(
        vec![Source::new("b", Arc::new(Manifest::open(&broken).unwrap()), 1.0)],
        Preprocess::new(8),
        4,
        1,
        1,
    );
    let err = loader.batch(0).unwrap_err().to_string();
    assert!(err.contains("corrupt.png"), "{err}");
}
