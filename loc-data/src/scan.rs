//! `--dry-run --scan`: every image header of a data set read before training (in parallel,
//! with a progress bar), so a missing or broken file shows before a batch draws it; and the
//! disk space an extraction will need, against what the cache folder's disk has.

use std::path::{Path, PathBuf};

use burn_dataset::Dataset;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::archive::{archive_parts, is_extracted};
use crate::config::SourceConfig;
use crate::magicbrush::parquet::parquet_shards;
use crate::pipeline::{ImageLimits, image_size};
use crate::record::PairRecord;
use crate::seed_data_edit::SeedImages;
use crate::skip::{Skip, SkipKind, SkipLog};

/// A data set's pairs, checked from their image headers.
#[derive(Debug)]
pub struct Scan {
    pub pairs: usize,
    /// Pairs whose images all open within the limits.
    pub usable: usize,
    /// Every image (or record) that would be skipped, by kind.
    pub skips: SkipLog,
}

/// Reads the header of both images of every pair of `dataset`.
pub fn scan_pairs(dataset: &dyn Dataset<PairRecord>, limits: ImageLimits, progress: bool) -> Scan {
    let pairs = dataset.len();
    let bar = if progress { ProgressBar::new(pairs as u64) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("scan {bar:40} {pos}/{len} pairs ({eta})").expect("a valid template"));
    let skips = SkipLog::default();
    let usable = (0..pairs)
        .into_par_iter()
        .filter(|&i| {
            let usable = match dataset.get(i) {
                Ok(record) => {
                    let sizes = [&record.before, &record.after].map(|source| image_size(source, limits));
                    sizes.iter().filter_map(|s| s.as_ref().err()).for_each(|skip| skips.record(skip));
                    sizes.iter().all(Result::is_ok)
                }
                Err(error) => {
                    skips.record(&Skip::new(SkipKind::BadRecord, format!("item {i}: {error}")));
                    false
                }
            };
            bar.inc(1);
            usable
        })
        .count();
    bar.finish_and_clear();
    Scan { pairs, usable, skips }
}

/// An extraction a source has still to do: into `cache`, about `bytes` (its archives' or
/// shards' size).
#[derive(Debug, PartialEq, Eq)]
pub struct Extraction {
    pub cache: PathBuf,
    pub bytes: u64,
}

/// The extraction `source` will do when opened, if any (none once its cache is complete).
pub fn pending_extraction(source: &SourceConfig) -> Option<Extraction> {
    let (sources, cache) = match source {
        SourceConfig::Seed(config) => match &config.images {
            SeedImages::Archive { dir, prefix, cache } => (archive_parts(dir, prefix).ok()?, cache),
            SeedImages::Folder(_) => return None,
        },
        SourceConfig::MagicbrushParquet { dir, split, cache, .. } => (parquet_shards(dir, split).ok()?, cache),
        _ => return None,
    };
    if is_extracted(cache, &sources) {
        return None;
    }
    let bytes = sources.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    Some(Extraction { cache: cache.clone(), bytes })
}

/// Bytes free for an unprivileged user on the disk that holds `path` (or, while `path` does
/// not exist yet, its nearest existing ancestor).
pub fn available_space(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists() && !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let stats = rustix::fs::statvfs(existing).ok()?;
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed_data_edit::{SeedConfig, SeedPart};

    #[test]
    fn an_archive_not_yet_extracted_needs_its_parts_size_on_a_disk_that_reports_its_space() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("images.tar.gz.part-aa"), vec![0u8; 3000]).unwrap();
        std::fs::write(dir.path().join("images.tar.gz.part-ab"), vec![0u8; 1000]).unwrap();
        let cache = dir.path().join("cache/images");
        let images = SeedImages::Archive { dir: dir.path().to_path_buf(), prefix: "images.tar.gz".into(), cache };
        let config = SeedConfig {
            part: SeedPart::Part1,
            annotations: vec![],
            images,
            prefer_rewritten: false,
            all_round_pairs: false,
            inverse_pairs: false,
        };
        let extraction = pending_extraction(&SourceConfig::Seed(config)).unwrap();
        assert_eq!(extraction.bytes, 4000);
        // The cache folder does not exist yet: its disk is the nearest existing ancestor's.
        assert!(available_space(&extraction.cache).is_some_and(|free| free > 0));
        assert_eq!(pending_extraction(&SourceConfig::Synthetic(crate::config::WorldConfig::new(3, false))), None);
    }
}
