//! SEED-Data-Edit (AILab-CVC), all three parts.
//!
//! - Parts 1 and 2: one pair per JSONL line (`source_image`, `target_image`, `instruction`,
//!   optionally the rewritten `instruction_new` / `response`).
//! - Part 3: one multi-turn session per line (`source_image`, and per round `i`
//!   `instruction_i`, `inverse_instruction_i`, `edit_image_i`), expanded into pairs.
//!
//! Images come from an extracted folder, or from the split `*.tar.gz.part-*` archives, which
//! are extracted once into a cache folder (see [`crate::archive`]). The folder at the top of
//! a tarball is not documented, so image paths are resolved by discovery: relative to the
//! image folder, or to one of its sub-folders.

use std::path::{Path, PathBuf};

use burn_dataset::{Dataset, DatasetError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::archive::{archive_parts, extract_tar_gz_parts};
use crate::error::{DataError, get_cloned};
use crate::jsonl::read_jsonl;
use crate::record::{ImageSource, PairRecord};
use crate::skip::{Skip, SkipKind, SkipLog};

/// Which release part a set of annotations belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeedPart {
    /// Automated pairs (Openimages, Unsplash).
    Part1,
    /// Real-world pairs.
    Part2,
    /// Multi-turn sessions.
    Part3,
}

/// Where a SEED part's images are.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum SeedImages {
    /// An extracted image folder.
    Folder(PathBuf),
    /// Archive parts `<dir>/<prefix>*`, extracted once into `cache`.
    Archive { dir: PathBuf, prefix: String, cache: PathBuf },
}

/// How to open one SEED part.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeedConfig {
    pub part: SeedPart,
    /// JSONL files, or folders whose `*.jsonl` files are all read.
    pub annotations: Vec<PathBuf>,
    pub images: SeedImages,
    /// Use `instruction_new` (then `response`) when a line has one.
    #[serde(default)]
    pub prefer_rewritten: bool,
    /// Part 3: every pair of rounds `i < j`, not only consecutive ones.
    #[serde(default)]
    pub all_round_pairs: bool,
    /// Part 3: also the way back (`edit_image_i -> edit_image_{i-1}` with the inverse
    /// instruction).
    #[serde(default)]
    pub inverse_pairs: bool,
}

/// One part of SEED-Data-Edit as pairs.
#[derive(Debug)]
pub struct SeedEdit {
    pairs: Vec<PairRecord>,
    pub skips: SkipLog,
}

#[derive(Deserialize)]
struct PairLine {
    source_image: PathBuf,
    target_image: PathBuf,
    instruction: String,
    instruction_new: Option<String>,
    response: Option<String>,
}

fn jsonl_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, DataError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(DataError::io(path))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// The folder image paths are relative to: `root` itself or the one sub-folder of it in
/// which the first referenced image exists.
fn discover_image_root(root: &Path, first_image: Option<&Path>) -> PathBuf {
    let Some(first) = first_image else { return root.to_path_buf() };
    if root.join(first).exists() {
        return root.to_path_buf();
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    subdirs.into_iter().find(|d| d.join(first).exists()).unwrap_or_else(|| root.to_path_buf())
}

/// The rounds of a part-3 session: `(image, instruction into it, inverse instruction)`,
/// round 0 being the source image.
fn session_rounds(line: &Map<String, Value>) -> Result<Vec<(PathBuf, String, String)>, String> {
    let text = |key: &str| line.get(key).and_then(Value::as_str).map(str::to_string);
    let source = text("source_image").ok_or("missing field `source_image`")?;
    let mut rounds = vec![(PathBuf::from(source), String::new(), String::new())];
    for i in 1.. {
        let Some(image) = text(&format!("edit_image_{i}")) else { break };
        let instruction = text(&format!("instruction_{i}")).ok_or(format!("missing field `instruction_{i}`"))?;
        let inverse = text(&format!("inverse_instruction_{i}")).unwrap_or_default();
        rounds.push((PathBuf::from(image), instruction, inverse));
    }
    if rounds.len() < 2 {
        return Err("no `edit_image_1`".into());
    }
    Ok(rounds)
}

impl SeedEdit {
    /// Reads the annotations (bad lines skipped and counted) and, for archives, extracts the
    /// images once. `progress` shows a progress bar during extraction.
    pub fn open(config: &SeedConfig, progress: bool) -> Result<Self, DataError> {
        let skips = SkipLog::default();
        let image_dir = match &config.images {
            SeedImages::Folder(dir) => dir.clone(),
            SeedImages::Archive { dir, prefix, cache } => {
                extract_tar_gz_parts(&archive_parts(dir, prefix)?, cache, &skips, progress)?;
                cache.clone()
            }
        };
        let files = jsonl_files(&config.annotations)?;
        let mut raw: Vec<(PathBuf, PathBuf, String, String)> = Vec::new();
        for file in &files {
            match config.part {
                SeedPart::Part1 | SeedPart::Part2 => {
                    for (line_no, line) in read_jsonl::<PairLine>(file, &skips)? {
                        let rewritten = line.instruction_new.or(line.response).filter(|_| config.prefer_rewritten);
                        let id = format!("{}:{line_no}", file.display());
                        raw.push((line.source_image, line.target_image, rewritten.unwrap_or(line.instruction), id));
                    }
                }
                SeedPart::Part3 => {
                    for (line_no, line) in read_jsonl::<Map<String, Value>>(file, &skips)? {
                        let id = format!("{}:{line_no}", file.display());
                        match session_rounds(&line) {
                            Ok(rounds) => raw.extend(expand_session(&rounds, config, &id)),
                            Err(problem) => skips.record(&Skip::new(SkipKind::BadRecord, format!("{id}: {problem}"))),
                        }
                    }
                }
            }
        }
        if raw.is_empty() {
            let path = files.first().cloned().unwrap_or_default();
            return Err(DataError::Empty { path, skipped: skips.total() });
        }
        let root = discover_image_root(&image_dir, raw.first().map(|r| r.0.as_path()));
        let pairs = raw
            .into_iter()
            .map(|(before, after, instruction, id)| PairRecord {
                before: ImageSource::File(root.join(before)),
                after: ImageSource::File(root.join(after)),
                instruction,
                id,
            })
            .collect();
        Ok(Self { pairs, skips })
    }
}

/// Pairs from one session's rounds: consecutive rounds (or every `i < j`), and optionally
/// the inverse of each consecutive round.
fn expand_session(
    rounds: &[(PathBuf, String, String)],
    config: &SeedConfig,
    id: &str,
) -> Vec<(PathBuf, PathBuf, String, String)> {
    let mut pairs = Vec::new();
    for j in 1..rounds.len() {
        let first = if config.all_round_pairs { 0 } else { j - 1 };
        for i in first..j {
            let instruction = rounds[i + 1..=j].iter().map(|r| r.1.as_str()).collect::<Vec<_>>().join(", then ");
            pairs.push((rounds[i].0.clone(), rounds[j].0.clone(), instruction, format!("{id}#{i}->{j}")));
        }
        if config.inverse_pairs && !rounds[j].2.is_empty() {
            pairs.push((
                rounds[j].0.clone(),
                rounds[j - 1].0.clone(),
                rounds[j].2.clone(),
                format!("{id}#{j}->{}", j - 1),
            ));
        }
    }
    pairs
}

impl Dataset<PairRecord> for SeedEdit {
    fn get(&self, index: usize) -> Result<PairRecord, DatasetError> {
        get_cloned(&self.pairs, index)
    }

    fn len(&self) -> usize {
        self.pairs.len()
    }
}
