//! Archives from the internet: the split `*.tar.gz.part-*` releases of SEED-Data-Edit,
//! extracted once (with a progress bar) into a cache folder.
//!
//! Entries are hostile until proven otherwise: absolute paths, `..` components and links of
//! any kind are refused and counted, and nothing is ever written outside the target folder.
//! A truncated archive keeps what was extracted before the damage and says so.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use flate2::read::MultiGzDecoder;
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::DataError;
use crate::skip::{Skip, SkipKind, SkipLog};

/// Written into the target folder after a complete pass; its presence (with the same
/// list of parts and sizes) means the extraction is not repeated.
const MARKER: &str = ".loc-extracted";

/// The part files of a split archive in the order `cat` would join them: `X.tar.gz.part-aa`,
/// `-ab`, ... (a single `X.tar.gz` is one part).
pub fn archive_parts(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, DataError> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(DataError::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix)))
        .collect();
    parts.sort();
    if parts.is_empty() {
        return Err(DataError::Invalid {
            path: dir.to_path_buf(),
            problem: format!("no archive parts named {prefix}*"),
        });
    }
    Ok(parts)
}

/// `path` if it stays inside the folder it is joined to: relative, no `..`, no root or prefix.
pub fn safe_relative_path(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// What one extraction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Extracted {
    pub files: usize,
    /// True when the archive ended early or was damaged part-way.
    pub truncated: bool,
    /// True when a previous complete extraction was found and reused.
    pub reused: bool,
}

/// Whether `target` holds a complete extraction of exactly these `sources` (names and sizes).
pub(crate) fn is_extracted(target: &Path, sources: &[PathBuf]) -> bool {
    std::fs::read_to_string(target.join(MARKER)).is_ok_and(|m| m == marker_text(sources))
}

/// Records that `target` holds a complete extraction of `sources`.
pub(crate) fn mark_extracted(target: &Path, sources: &[PathBuf]) -> Result<(), DataError> {
    let marker = target.join(MARKER);
    std::fs::write(&marker, marker_text(sources)).map_err(DataError::io(&marker))
}

fn marker_text(parts: &[PathBuf]) -> String {
    parts.iter().map(|p| format!("{} {}\n", p.display(), std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))).collect()
}

/// Extracts the gzip-compressed tar stream made of `parts` (joined in order) into `target`,
/// once. Unsafe or unreadable entries are recorded in `skips`.
pub fn extract_tar_gz_parts(
    parts: &[PathBuf],
    target: &Path,
    skips: &SkipLog,
    progress: bool,
) -> Result<Extracted, DataError> {
    if is_extracted(target, parts) {
        return Ok(Extracted { reused: true, ..Extracted::default() });
    }
    std::fs::create_dir_all(target).map_err(DataError::io(target))?;

    let total: u64 = parts.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    let bar = if progress { ProgressBar::new(total) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {bytes}/{total_bytes} ({eta})")
            .expect("a valid progress template"),
    );
    bar.set_message(format!("extracting {}", parts[0].display()));
    let mut stream: Box<dyn Read> = Box::new(io::empty());
    for part in parts {
        stream = Box::new(stream.chain(File::open(part).map_err(DataError::io(part))?));
    }
    let mut archive = tar::Archive::new(MultiGzDecoder::new(bar.wrap_read(stream)));
    let name = parts[0].display().to_string();
    let mut done = Extracted::default();

    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => return Err(DataError::Invalid { path: parts[0].clone(), problem: e.to_string() }),
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                skips.record(&Skip::new(SkipKind::TruncatedArchive, format!("{name}: {e}")));
                done.truncated = true;
                break;
            }
        };
        let raw_path = entry.path().map(|p| p.into_owned()).unwrap_or_default();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        let Some(relative) = safe_relative_path(&raw_path).filter(|_| kind.is_file()) else {
            let what = if kind.is_file() { "path escapes the target" } else { "not a regular file" };
            skips.record(&Skip::new(SkipKind::UnsafeArchivePath, format!("{name}: {} ({what})", raw_path.display())));
            continue;
        };
        let destination = target.join(&relative);
        if let Some(parent) = destination.parent() {
            std::fs::create_dir_all(parent).map_err(DataError::io(parent))?;
        }
        let written = File::create(&destination).and_then(|mut file| io::copy(&mut entry, &mut file));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&destination);
            skips.record(&Skip::new(SkipKind::TruncatedArchive, format!("{name}: {}: {e}", raw_path.display())));
            done.truncated = true;
            break;
        }
        done.files += 1;
    }
    bar.finish_and_clear();
    if done.files == 0 {
        return Err(DataError::Empty { path: parts[0].clone(), skipped: skips.total() });
    }
    if !done.truncated {
        mark_extracted(target, parts)?;
    }
    Ok(done)
}
