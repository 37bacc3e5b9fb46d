//! Line-by-line JSON with per-line skips.

use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::DataError;
use crate::skip::{Skip, SkipKind, SkipLog};

/// Parses every non-blank line of `path` as `T`; a line that does not parse (bad JSON, a
/// missing field) is skipped and recorded with its line number. Returns `(line, value)`.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path, skips: &SkipLog) -> Result<Vec<(usize, T)>, DataError> {
    let file = std::fs::File::open(path).map_err(DataError::io(path))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(DataError::io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(value) => out.push((i + 1, value)),
            Err(e) => skips.record(&Skip::new(SkipKind::BadRecord, format!("{}:{}: {e}", path.display(), i + 1))),
        }
    }
    Ok(out)
}
