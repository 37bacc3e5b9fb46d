//! MagicBrush from the Hugging Face parquet shards (`osunlp/MagicBrush`).
//!
//! Row groups are large (~500 MB), so shards are streamed one row group at a time, reading
//! only the needed columns, and the images are extracted once into a cache folder with an
//! index; training then reads small files at random. Rows with a missing or unsafe field are
//! skipped and counted.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, RecordBatch, StructArray};
use indicatif::ProgressBar;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use crate::archive::{is_extracted, mark_extracted, safe_relative_path};
use crate::error::DataError;
use crate::magicbrush::{MagicBrush, Session, Turn};
use crate::record::ImageSource;
use crate::skip::{Skip, SkipKind, SkipLog};

/// The shards of `split` (`train`, `dev`) under `dir` or `dir/data`, in order.
pub fn parquet_shards(dir: &Path, split: &str) -> Result<Vec<PathBuf>, DataError> {
    let mut shards = Vec::new();
    for folder in [dir.to_path_buf(), dir.join("data")] {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        shards.extend(entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with(&format!("{split}-")) && name.ends_with(".parquet")
        }));
    }
    shards.sort();
    if shards.is_empty() {
        return Err(DataError::Invalid { path: dir.to_path_buf(), problem: format!("no {split}-*.parquet shards") });
    }
    Ok(shards)
}

/// One extracted turn, a line of `index.jsonl` in the cache.
#[derive(Serialize, Deserialize)]
struct IndexRow {
    img_id: String,
    turn_index: usize,
    instruction: String,
    source: PathBuf,
    target: PathBuf,
    mask: Option<PathBuf>,
}

const INDEX: &str = "index.jsonl";
const BATCH_ROWS: usize = 32;

impl MagicBrush {
    /// Opens the parquet `shards`, extracting their images into `cache` on the first call
    /// (masks too when `masks`). `progress` shows a bar over row groups.
    pub fn open_parquet(shards: &[PathBuf], cache: &Path, masks: bool, progress: bool) -> Result<Self, DataError> {
        let skips = SkipLog::default();
        if !is_extracted(cache, shards) {
            let rows = extract(shards, cache, masks, &skips, progress)?;
            let index: String = rows.iter().map(|r| serde_json::to_string(r).expect("an index row") + "\n").collect();
            std::fs::write(cache.join(INDEX), index).map_err(DataError::io(cache.join(INDEX)))?;
            mark_extracted(cache, shards)?;
        }
        let index_path = cache.join(INDEX);
        let rows = crate::jsonl::read_jsonl::<IndexRow>(&index_path, &skips)?;
        let mut sessions: BTreeMap<String, Vec<IndexRow>> = BTreeMap::new();
        for (_, row) in rows {
            sessions.entry(row.img_id.clone()).or_default().push(row);
        }
        let sessions: Vec<Session> = sessions
            .into_iter()
            .map(|(img_id, mut rows)| {
                rows.sort_by_key(|r| r.turn_index);
                let turns = rows
                    .into_iter()
                    .map(|r| Turn {
                        index: r.turn_index,
                        input: ImageSource::File(cache.join(&r.source)),
                        output: ImageSource::File(cache.join(&r.target)),
                        mask: r.mask.map(|m| ImageSource::File(cache.join(m))),
                        instruction: r.instruction,
                        output_name: format!("{img_id}-output{}.png", r.turn_index),
                        local_description: None,
                    })
                    .collect();
                Session { img_id, turns }
            })
            .collect();
        if sessions.is_empty() {
            return Err(DataError::Empty { path: shards.first().cloned().unwrap_or_default(), skipped: skips.total() });
        }
        Ok(Self::from_sessions(sessions, skips))
    }
}

/// Streams every row group of every shard and writes its images under `cache/images/`.
fn extract(
    shards: &[PathBuf],
    cache: &Path,
    masks: bool,
    skips: &SkipLog,
    progress: bool,
) -> Result<Vec<IndexRow>, DataError> {
    let mut columns = vec!["img_id", "turn_index", "instruction", "source_img", "target_img"];
    if masks {
        columns.push("mask_img");
    }
    let mut rows = Vec::new();
    let bar = if progress { ProgressBar::new(0) } else { ProgressBar::hidden() };
    for shard in shards {
        let invalid = |problem: String| DataError::Invalid { path: shard.clone(), problem };
        let open = || -> Result<_, DataError> {
            let file = File::open(shard).map_err(DataError::io(shard))?;
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| invalid(e.to_string()))
        };
        let builder = open()?;
        let schema = builder.schema().clone();
        let mut roots = Vec::new();
        for column in &columns {
            roots.push(schema.index_of(column).map_err(|_| invalid(format!("no column `{column}`")))?);
        }
        let groups = builder.metadata().num_row_groups();
        if builder.metadata().file_metadata().num_rows() == 0 {
            skips.record(&Skip::new(SkipKind::BadRecord, format!("{}: no rows", shard.display())));
            continue;
        }
        bar.inc_length(groups as u64);
        for group in 0..groups {
            let builder = open()?;
            let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
            let reader = builder
                .with_projection(mask)
                .with_row_groups(vec![group])
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            for (b, batch) in reader.enumerate() {
                let batch = batch.map_err(|e| invalid(format!("row group {group}: {e}")))?;
                for row in 0..batch.num_rows() {
                    let at = format!("{}: row group {group}, row {}", shard.display(), b * BATCH_ROWS + row);
                    match write_row(&batch, row, cache, masks) {
                        Ok(r) => rows.push(r),
                        Err(problem) => skips.record(&Skip::new(problem.0, format!("{at}: {}", problem.1))),
                    }
                }
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    if rows.is_empty() {
        return Err(DataError::Empty { path: shards.first().cloned().unwrap_or_default(), skipped: skips.total() });
    }
    Ok(rows)
}

/// The `bytes` of an image struct column `{bytes, path}` at `row`.
fn image_bytes(image: &StructArray, row: usize) -> Option<&[u8]> {
    let bytes = image.column_by_name("bytes")?;
    if bytes.is_null(row) || image.is_null(row) {
        return None;
    }
    bytes.as_binary_opt::<i32>().map(|a| a.value(row)).or_else(|| bytes.as_binary_opt::<i64>().map(|a| a.value(row)))
}

fn string_at(batch: &RecordBatch, column: &str, row: usize) -> Option<String> {
    let array = batch.column_by_name(column)?;
    if array.is_null(row) {
        return None;
    }
    array
        .as_string_opt::<i32>()
        .map(|a| a.value(row).to_string())
        .or_else(|| array.as_string_opt::<i64>().map(|a| a.value(row).to_string()))
}

fn write_row(batch: &RecordBatch, row: usize, cache: &Path, masks: bool) -> Result<IndexRow, (SkipKind, String)> {
    let bad = |what: &str| (SkipKind::BadRecord, format!("missing `{what}`"));
    let img_id = string_at(batch, "img_id", row).ok_or_else(|| bad("img_id"))?;
    let folder =
        safe_relative_path(Path::new(&img_id)).ok_or((SkipKind::UnsafeArchivePath, format!("img_id {img_id:?}")))?;
    let turns = batch.column_by_name("turn_index").ok_or_else(|| bad("turn_index"))?;
    let turn_index =
        turns.as_primitive_opt::<Int32Type>().filter(|t| !t.is_null(row)).ok_or_else(|| bad("turn_index"))?.value(row);
    let instruction = string_at(batch, "instruction", row).ok_or_else(|| bad("instruction"))?;
    let image = |column: &str, kind: &str| -> Result<PathBuf, (SkipKind, String)> {
        let images = batch.column_by_name(column).and_then(|c| c.as_struct_opt()).ok_or_else(|| bad(column))?;
        let bytes = image_bytes(images, row).ok_or_else(|| bad(column))?;
        let relative = Path::new("images").join(&folder).join(format!("{turn_index}-{kind}.png"));
        let path = cache.join(&relative);
        std::fs::create_dir_all(path.parent().expect("a parent")).map_err(|e| (SkipKind::BadRecord, e.to_string()))?;
        std::fs::write(&path, bytes).map_err(|e| (SkipKind::BadRecord, format!("{}: {e}", path.display())))?;
        Ok(relative)
    };
    let source = image("source_img", "source")?;
    let target = image("target_img", "target")?;
    let mask = if masks { Some(image("mask_img", "mask")?) } else { None };
    Ok(IndexRow { img_id, turn_index: turn_index.max(0) as usize, instruction, source, target, mask })
}
