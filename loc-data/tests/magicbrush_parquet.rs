//! MagicBrush parquet shards written with the `parquet` crate in the Hugging Face schema.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, Int32Array, RecordBatch, StringArray, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema};
use burn_dataset::Dataset;
use common::*;
use loc_data::magicbrush::MagicBrush;
use loc_data::magicbrush::parquet::parquet_shards;
use loc_data::pipeline::{ImageLimits, load_rgb};
use loc_data::{ImageSource, SkipKind};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

/// One row: (img_id, turn_index, instruction, source colour, target colour or None).
type Row = (&'static str, i32, &'static str, u8, Option<u8>);

fn image_fields() -> Fields {
    Fields::from(vec![Field::new("bytes", DataType::Binary, true), Field::new("path", DataType::Utf8, true)])
}

fn image_column(colours: &[Option<u8>]) -> ArrayRef {
    let bytes: BinaryArray =
        colours.iter().map(|c| c.map(png_bytes)).collect::<Vec<_>>().iter().map(|b| b.as_deref()).collect();
    let paths: StringArray = colours.iter().map(|c| c.map(|_| "x.png")).collect();
    Arc::new(StructArray::new(image_fields(), vec![Arc::new(bytes) as ArrayRef, Arc::new(paths)], None))
}

/// A shard with the dataset card's columns, `rows_per_group` rows per row group.
fn write_shard(path: &Path, rows: &[Row], rows_per_group: usize) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("img_id", DataType::Utf8, true),
        Field::new("turn_index", DataType::Int32, true),
        Field::new("source_img", DataType::Struct(image_fields()), true),
        Field::new("mask_img", DataType::Struct(image_fields()), true),
        Field::new("instruction", DataType::Utf8, true),
        Field::new("target_img", DataType::Struct(image_fields()), true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| Some(r.0)).collect::<StringArray>()),
        Arc::new(rows.iter().map(|r| Some(r.1)).collect::<Int32Array>()),
        image_column(&rows.iter().map(|r| Some(r.3)).collect::<Vec<_>>()),
        image_column(&rows.iter().map(|r| Some(r.3 + 100)).collect::<Vec<_>>()),
        Arc::new(rows.iter().map(|r| Some(r.2)).collect::<StringArray>()),
        image_column(&rows.iter().map(|r| r.4).collect::<Vec<_>>()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(rows_per_group)).build();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn red(source: &ImageSource) -> u8 {
    load_rgb(source, ImageLimits::default()).unwrap().get_pixel(0, 0).0[0]
}

fn shards(dir: &Path) -> Vec<PathBuf> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_shard(
        &data.join("train-00000-of-00002-a1b2.parquet"),
        &[
            ("242679", 1, "put a hat on the cat", 10, Some(11)),
            ("242679", 2, "make the hat red", 11, Some(12)),
            ("../escape", 1, "hostile id", 1, Some(2)),
        ],
        2,
    );
    write_shard(
        &data.join("train-00001-of-00002-c3d4.parquet"),
        &[("300001", 1, "remove the car", 20, Some(21)), ("300002", 1, "target lost", 30, None)],
        1,
    );
    write_shard(&data.join("dev-00000-of-00001-e5f6.parquet"), &[("999", 1, "dev only", 40, Some(41))], 1);
    parquet_shards(dir, "train").unwrap()
}

#[test]
fn shards_stream_into_sessions_with_skipped_rows_counted() {
    let dir = tempfile::tempdir().unwrap();
    let shards = shards(dir.path());
    assert_eq!(shards.len(), 2, "only the train split");
    let cache = dir.path().join("cache");
    let mb = MagicBrush::open_parquet(&shards, &cache, false, false).unwrap();

    assert_eq!(mb.sessions.len(), 2);
    assert_eq!(mb.turns(), 3);
    let cat = &mb.sessions[0];
    assert_eq!(cat.img_id, "242679");
    assert_eq!(
        cat.turns.iter().map(|t| (t.index, t.instruction.as_str())).collect::<Vec<_>>(),
        [(1, "put a hat on the cat"), (2, "make the hat red")]
    );
    assert_eq!(cat.turns[1].output_name, "242679-output2.png");
    assert_eq!((red(&cat.turns[0].input), red(&cat.turns[0].output), red(&cat.turns[1].output)), (10, 11, 12));
    assert!(cat.turns[0].mask.is_none(), "masks not requested");
    assert!(!cache.join("images/242679/1-mask.png").exists(), "the mask column is not read");

    let pair = mb.get(2).unwrap();
    assert_eq!((pair.id.as_str(), pair.instruction.as_str()), ("magicbrush:300001#1", "remove the car"));
    assert_eq!(mb.skips.count(SkipKind::UnsafeArchivePath), 1);
    assert_eq!(mb.skips.count(SkipKind::BadRecord), 1);
    assert!(!dir.path().join("escape").exists());

    // The second open reads the cache, not the shards.
    std::fs::remove_file(cache.join("images/300001/1-source.png")).unwrap();
    let again = MagicBrush::open_parquet(&shards, &cache, false, false).unwrap();
    assert_eq!(again.turns(), 3);
    assert!(!cache.join("images/300001/1-source.png").exists());

    let with_masks = MagicBrush::open_parquet(&shards, &dir.path().join("cache-masks"), true, false).unwrap();
    assert_eq!(red(with_masks.sessions[0].turns[1].mask.as_ref().unwrap()), 111);
}

#[test]
fn empty_and_broken_shards_are_counted_or_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("train-00000-of-00002-empty.parquet");
    write_shard(&empty, &[], 1);
    let good = dir.path().join("train-00001-of-00002-good.parquet");
    write_shard(&good, &[("1", 1, "x", 5, Some(6))], 1);

    let mb = MagicBrush::open_parquet(&[empty.clone(), good], &dir.path().join("c1"), false, false).unwrap();
    assert_eq!(mb.turns(), 1);
    assert_eq!(mb.skips.count(SkipKind::BadRecord), 1);

    let err = MagicBrush::open_parquet(std::slice::from_ref(&empty), &dir.path().join("c2"), false, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty.parquet") && err.contains("no usable items"), "{err}");

    let junk = dir.path().join("train-junk.parquet");
    std::fs::write(&junk, b"PAR1 not really").unwrap();
    let err = MagicBrush::open_parquet(&[junk], &dir.path().join("c3"), false, false).unwrap_err().to_string();
    assert!(err.contains("train-junk.parquet"), "{err}");
}
