//! User data: a hand-written JSONL manifest of pairs or quads.
//!
//! One JSON object per line; image paths are relative to the manifest's folder:
//!
//! ```text
//! {"before": "cat.png", "after": "cat_smiling.png", "instruction": "make it smile"}
//! {"before": "a.jpg", "after": "a2.jpg", "query": "b.jpg", "target": "b2.jpg"}
//! ```
//!
//! `instruction` and `id` are optional; `query` and `target` (together) make a quad. Every
//! line is a pair; lines with a query and target are also quads.

use std::path::{Path, PathBuf};

use burn_dataset::{Dataset, DatasetError};
use serde::Deserialize;

use crate::error::{DataError, get_cloned};
use crate::jsonl::read_jsonl;
use crate::record::{ImageSource, PairRecord, QuadRecord};
use crate::skip::{Skip, SkipKind, SkipLog};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    before: PathBuf,
    after: PathBuf,
    #[serde(default)]
    instruction: String,
    id: Option<String>,
    query: Option<PathBuf>,
    target: Option<PathBuf>,
}

/// A JSONL manifest of pairs (and quads).
#[derive(Debug)]
pub struct Manifest {
    pairs: Vec<PairRecord>,
    quads: Vec<QuadRecord>,
    pub skips: SkipLog,
}

impl Manifest {
    /// Reads `path`. Bad lines are skipped and counted; a manifest with no usable line is an
    /// error.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let skips = SkipLog::default();
        let root = path.parent().unwrap_or(Path::new("."));
        let file = |p: &Path| ImageSource::File(root.join(p));
        let (mut pairs, mut quads) = (Vec::new(), Vec::new());
        for (line_no, line) in read_jsonl::<Line>(path, &skips)? {
            let pair = PairRecord {
                before: file(&line.before),
                after: file(&line.after),
                instruction: line.instruction,
                id: line.id.unwrap_or_else(|| format!("{}:{line_no}", path.display())),
            };
            match (line.query, line.target) {
                (Some(query), Some(target)) => {
                    quads.push(QuadRecord { pair: pair.clone(), query: file(&query), target: file(&target) })
                }
                (None, None) => {}
                _ => {
                    let detail = format!("{}:{line_no}: `query` and `target` come together", path.display());
                    skips.record(&Skip::new(SkipKind::BadRecord, detail));
                    continue;
                }
            }
            pairs.push(pair);
        }
        if pairs.is_empty() {
            return Err(DataError::Empty { path: path.to_path_buf(), skipped: skips.total() });
        }
        Ok(Self { pairs, quads, skips })
    }

    /// The quads of the manifest (lines with `query` and `target`).
    pub fn quads(&self) -> ManifestQuads<'_> {
        ManifestQuads(&self.quads)
    }
}

impl Dataset<PairRecord> for Manifest {
    fn get(&self, index: usize) -> Result<PairRecord, DatasetError> {
        get_cloned(&self.pairs, index)
    }

    fn len(&self) -> usize {
        self.pairs.len()
    }
}

/// The quads of a [`Manifest`].
#[derive(Debug)]
pub struct ManifestQuads<'a>(&'a [QuadRecord]);

impl Dataset<QuadRecord> for ManifestQuads<'_> {
    fn get(&self, index: usize) -> Result<QuadRecord, DatasetError> {
        get_cloned(self.0, index)
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}
