//! Skipped items: never a crash, never silently hidden.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

/// Why an item (a line, a row, an image, an archive entry) was left out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct Skip {
    pub kind: SkipKind,
    /// The file, line, key or entry at fault.
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipKind {
    MissingFile,
    CorruptImage,
    ImageTooLarge,
    BadRecord,
    UnsafeArchivePath,
    TruncatedArchive,
}

impl fmt::Display for SkipKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipKind::MissingFile => "missing file",
            SkipKind::CorruptImage => "corrupt image",
            SkipKind::ImageTooLarge => "image too large",
            SkipKind::BadRecord => "bad record",
            SkipKind::UnsafeArchivePath => "unsafe archive path",
            SkipKind::TruncatedArchive => "truncated archive",
        })
    }
}

impl Skip {
    pub fn new(kind: SkipKind, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into() }
    }
}

/// Counts skips by kind and keeps the first few details of each, for the run summary.
#[derive(Debug, Default)]
pub struct SkipLog {
    inner: Mutex<BTreeMap<SkipKind, (usize, Vec<String>)>>,
}

/// Details kept per kind: enough to find the culprit, bounded for data sets with millions.
const EXAMPLES: usize = 5;

impl SkipLog {
    pub fn record(&self, skip: &Skip) {
        let mut inner = self.inner.lock().expect("skip log poisoned");
        let (count, examples) = inner.entry(skip.kind).or_default();
        *count += 1;
        if examples.len() < EXAMPLES {
            examples.push(skip.detail.clone());
        }
    }

    pub fn total(&self) -> usize {
        self.inner.lock().expect("skip log poisoned").values().map(|(n, _)| n).sum()
    }

    pub fn count(&self, kind: SkipKind) -> usize {
        self.inner.lock().expect("skip log poisoned").get(&kind).map_or(0, |(n, _)| *n)
    }

    /// `(kind, count, first details)` for every kind seen.
    pub fn summary(&self) -> Vec<(SkipKind, usize, Vec<String>)> {
        let inner = self.inner.lock().expect("skip log poisoned");
        inner.iter().map(|(k, (n, ex))| (*k, *n, ex.clone())).collect()
    }

    pub fn merge_from(&self, other: &SkipLog) {
        for (kind, count, examples) in other.summary() {
            let mut inner = self.inner.lock().expect("skip log poisoned");
            let (n, ex) = inner.entry(kind).or_default();
            *n += count;
            ex.extend(examples.into_iter().take(EXAMPLES.saturating_sub(ex.len())));
        }
    }
}

impl fmt::Display for SkipLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let summary = self.summary();
        if summary.is_empty() {
            return write!(f, "nothing skipped");
        }
        for (kind, count, examples) in summary {
            writeln!(f, "{count} skipped ({kind}), e.g.:")?;
            for example in examples {
                writeln!(f, "    {example}")?;
            }
        }
        Ok(())
    }
}
