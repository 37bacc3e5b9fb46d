//! MagicBrush (OSU NLP): multi-turn editing sessions with masks and instructions.
//!
//! Three ways in, one result ([`MagicBrush`]: sessions of turns, and every turn as a pair):
//! - the original folder layout (`images/<id>/<id>-input.png`, `-outputK.png`, `-maskK.png`,
//!   `edit_sessions.json`, `global_descriptions.json`, `local_descriptions.json`);
//! - the same layout read straight from the (password-protected) release zip;
//! - the Hugging Face parquet shards (see [`parquet`]).
//!
//! In a session, the input of turn `k > 1` is the ground-truth output of turn `k - 1`.

pub mod parquet;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn_dataset::{Dataset, DatasetError};
use serde::Deserialize;

use crate::archive::safe_relative_path;
use crate::error::{DataError, check_index};
use crate::record::{ImageSource, PairRecord};
use crate::skip::{Skip, SkipKind, SkipLog};

/// One edit turn.
#[derive(Clone, Debug)]
pub struct Turn {
    /// 1-based.
    pub index: usize,
    pub input: ImageSource,
    pub output: ImageSource,
    pub mask: Option<ImageSource>,
    pub instruction: String,
    /// The ground-truth file name (`<id>-output<k>.png`), as the official scripts name it.
    pub output_name: String,
    /// The caption of the output (`local_descriptions.json`), for CLIP-T.
    pub local_description: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Session {
    pub img_id: String,
    pub turns: Vec<Turn>,
}

/// MagicBrush as sessions, and as a data set of pairs (one per turn).
#[derive(Debug)]
pub struct MagicBrush {
    pub sessions: Vec<Session>,
    /// (session, turn) of every pair, in order.
    index: Vec<(usize, usize)>,
    pub skips: SkipLog,
}

impl MagicBrush {
    pub(crate) fn from_sessions(sessions: Vec<Session>, skips: SkipLog) -> Self {
        let index = sessions
            .iter()
            .enumerate()
            .flat_map(|(s, session)| (0..session.turns.len()).map(move |t| (s, t)))
            .collect();
        Self { sessions, index, skips }
    }

    /// The original layout in a folder (`root` holds `edit_sessions.json` and `images/`).
    pub fn open_folder(root: &Path) -> Result<Self, DataError> {
        Self::open_layout(&Layout::Folder(root.to_path_buf()), SkipLog::default())
    }

    /// The original layout inside a zip, wherever `edit_sessions.json` sits in it.
    pub fn open_zip(archive: &Path, password: Option<&[u8]>) -> Result<Self, DataError> {
        let skips = SkipLog::default();
        let file = std::fs::File::open(archive).map_err(DataError::io(archive))?;
        let invalid = |problem: String| DataError::Invalid { path: archive.to_path_buf(), problem };
        let zip = zip::ZipArchive::new(file).map_err(|e| invalid(e.to_string()))?;
        let mut prefix = None;
        for name in zip.file_names() {
            let name = name.map_err(|e| invalid(e.to_string()))?;
            if safe_relative_path(Path::new(name.as_ref())).is_none() {
                let detail = format!("{}: {name} (path escapes the archive)", archive.display());
                skips.record(&Skip::new(SkipKind::UnsafeArchivePath, detail));
            } else if let Some(p) = name.strip_suffix("edit_sessions.json").filter(|p| p.is_empty() || p.ends_with('/'))
            {
                prefix = Some(p.to_string());
            }
        }
        let prefix = prefix.ok_or_else(|| invalid("no edit_sessions.json in the archive".into()))?;
        let layout = Layout::Zip { archive: archive.to_path_buf(), prefix, password: password.map(Arc::from) };
        Self::open_layout(&layout, skips)
    }

    fn open_layout(layout: &Layout, skips: SkipLog) -> Result<Self, DataError> {
        let sessions: BTreeMap<String, Vec<TurnEntry>> = layout.json("edit_sessions.json")?;
        let local: BTreeMap<String, BTreeMap<String, String>> = layout.json_or_default("local_descriptions.json")?;
        let mut out = Vec::new();
        for (img_id, entries) in sessions {
            if safe_relative_path(Path::new(&img_id)).is_none() {
                skips.record(&Skip::new(SkipKind::UnsafeArchivePath, format!("session id {img_id:?}")));
                continue;
            }
            let image = |name: &str| layout.image(&format!("images/{img_id}/{name}"));
            let turns = entries
                .into_iter()
                .enumerate()
                .map(|(k, e)| Turn {
                    index: k + 1,
                    input: image(&e.input),
                    output: image(&e.output),
                    mask: e.mask.as_deref().map(image),
                    instruction: e.instruction,
                    local_description: local.get(&img_id).and_then(|d| d.get(&e.output)).cloned(),
                    output_name: e.output,
                })
                .collect();
            out.push(Session { img_id, turns });
        }
        if out.is_empty() {
            return Err(DataError::Empty { path: layout.describe("edit_sessions.json"), skipped: skips.total() });
        }
        Ok(Self::from_sessions(out, skips))
    }

    pub fn turns(&self) -> usize {
        self.index.len()
    }
}

#[derive(Deserialize)]
struct TurnEntry {
    input: String,
    mask: Option<String>,
    output: String,
    instruction: String,
}

/// Where the files of the original layout are.
enum Layout {
    Folder(PathBuf),
    Zip { archive: PathBuf, prefix: String, password: Option<Arc<[u8]>> },
}

impl Layout {
    fn describe(&self, name: &str) -> PathBuf {
        match self {
            Layout::Folder(root) => root.join(name),
            Layout::Zip { archive, prefix, .. } => PathBuf::from(format!("{}:{prefix}{name}", archive.display())),
        }
    }

    fn image(&self, name: &str) -> ImageSource {
        match self {
            Layout::Folder(root) => ImageSource::File(root.join(name)),
            Layout::Zip { archive, prefix, password } => ImageSource::ZipEntry {
                archive: archive.clone(),
                entry: format!("{prefix}{name}"),
                password: password.clone(),
            },
        }
    }

    /// The bytes of `name`, or `None` when it does not exist.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, DataError> {
        let path = self.describe(name);
        let invalid = |problem: String| DataError::Invalid { path: path.clone(), problem };
        match self {
            Layout::Folder(root) => match std::fs::read(root.join(name)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(DataError::Io { path, source: e }),
            },
            Layout::Zip { archive, prefix, password } => {
                let file = std::fs::File::open(archive).map_err(DataError::io(archive))?;
                let mut zip = zip::ZipArchive::new(file).map_err(|e| invalid(e.to_string()))?;
                let entry = format!("{prefix}{name}");
                let found = match password {
                    Some(password) => zip.by_name_decrypt(&entry, password),
                    None => zip.by_name(&entry),
                };
                let mut found = match found {
                    Ok(found) => found,
                    Err(zip::result::ZipError::FileNotFound) => return Ok(None),
                    Err(zip::result::ZipError::UnsupportedArchive(m)) if m.contains("Password") => {
                        return Err(invalid(format!("{m}: pass the archive's password")));
                    }
                    Err(e) => return Err(invalid(e.to_string())),
                };
                let mut bytes = Vec::new();
                found.read_to_end(&mut bytes).map_err(|e| invalid(format!("{e} (wrong password?)")))?;
                Ok(Some(bytes))
            }
        }
    }

    fn json_or_default<T: for<'de> Deserialize<'de> + Default>(&self, name: &str) -> Result<T, DataError> {
        match self.read(name)? {
            None => Ok(T::default()),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| DataError::Invalid { path: self.describe(name), problem: e.to_string() }),
        }
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<T, DataError> {
        let bytes = self
            .read(name)?
            .ok_or_else(|| DataError::Invalid { path: self.describe(name), problem: "missing".into() })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| DataError::Invalid { path: self.describe(name), problem: e.to_string() })
    }
}

impl Dataset<PairRecord> for MagicBrush {
    fn get(&self, index: usize) -> Result<PairRecord, DatasetError> {
        check_index(index, self.index.len())?;
        let (s, t) = self.index[index];
        let session = &self.sessions[s];
        let turn = &session.turns[t];
        Ok(PairRecord {
            before: turn.input.clone(),
            after: turn.output.clone(),
            instruction: turn.instruction.clone(),
            id: format!("magicbrush:{}#{}", session.img_id, turn.index),
        })
    }

    fn len(&self) -> usize {
        self.index.len()
    }
}
