//! Run checkpoints: `OUTPUT/checkpoints/step-NNNNNNNN/` holds the weights of what trains, the
//! optimiser state and `trainer_state.json` (steps done, resolved config). A checkpoint is
//! written into a hidden `.step-N.partial/` folder and renamed into place when complete, so
//! a kill during a write leaves the previous checkpoints as they were; older ones beyond the
//! retention limit are removed after the rename.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

pub const STATE_FILE: &str = "trainer_state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The trained weights' moving average (`[train] ema_decay`), by module path.
pub const EMA_FILE: &str = "ema.safetensors";
const PREFIX: &str = "step-";

/// What a run needs, beyond weights, to continue exactly where it stopped.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunState {
    /// Steps done; the next step to run. The data position and every random draw derive
    /// from it and the seed.
    pub step: u64,
    /// Optimiser updates applied (steps with a non-finite loss are skipped).
    pub updates: u64,
    /// Non-finite losses so far.
    pub bad_steps: u64,
    /// The resolved configuration, as TOML.
    pub config: String,
}

pub fn checkpoints_dir(output_dir: &Path) -> PathBuf {
    output_dir.join("checkpoints")
}

/// Complete checkpoints under `output_dir`, oldest first.
pub fn list(output_dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(checkpoints_dir(output_dir)) else { return Vec::new() };
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix(PREFIX)?.parse().ok()?;
            e.path().join(STATE_FILE).exists().then(|| (step, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// `latest` (the newest complete checkpoint of the run) or a checkpoint folder.
pub fn resolve(output_dir: &Path, which: &str) -> anyhow::Result<PathBuf> {
    if which == "latest" {
        return list(output_dir).pop().map(|(_, path)| path).with_context(|| {
            format!("--resume latest: no checkpoint under {}", checkpoints_dir(output_dir).display())
        });
    }
    let path = PathBuf::from(which);
    if !path.join(STATE_FILE).exists() {
        bail!("--resume {which}: not a checkpoint folder (no {STATE_FILE})");
    }
    Ok(path)
}

pub fn read_state(dir: &Path) -> anyhow::Result<RunState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Writes checkpoint `state.step`: `write` fills the folder with weights and optimiser state,
/// then the state file is added and the folder renamed into place; keeps the newest `keep`.
pub fn write(
    output_dir: &Path,
    state: &RunState,
    keep: usize,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    let root = checkpoints_dir(output_dir);
    let name = format!("{PREFIX}{:08}", state.step);
    let partial = root.join(format!(".{name}.partial"));
    let done = root.join(&name);
    if partial.exists() {
        std::fs::remove_dir_all(&partial).with_context(|| format!("removing {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    write(&partial)?;
    let json = serde_json::to_string_pretty(state)?;
    std::fs::write(partial.join(STATE_FILE), json).with_context(|| format!("writing {}", partial.display()))?;
    if done.exists() {
        std::fs::remove_dir_all(&done).with_context(|| format!("replacing {}", done.display()))?;
    }
    std::fs::rename(&partial, &done).with_context(|| format!("renaming {} into place", partial.display()))?;
    let all = list(output_dir);
    for (_, old) in all.iter().take(all.len().saturating_sub(keep)) {
        std::fs::remove_dir_all(old).with_context(|| format!("removing old checkpoint {}", old.display()))?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: u64) -> RunState {
        RunState { step, updates: step, bad_steps: 0, config: String::new() }
    }

    #[test]
    fn a_failed_write_leaves_the_previous_checkpoint_as_latest() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &state(2), 3, |d| Ok(std::fs::write(d.join("w"), b"two")?)).unwrap();
        // A write that dies halfway (the process killed after its first file).
        let failed = write(dir.path(), &state(4), 3, |d| {
            std::fs::write(d.join("w"), b"four, partly")?;
            bail!("killed")
        });
        assert!(failed.is_err());
        let latest = resolve(dir.path(), "latest").unwrap();
        assert_eq!(read_state(&latest).unwrap().step, 2);
        assert_eq!(std::fs::read(latest.join("w")).unwrap(), b"two");
        // The next write cleans up the leftover and lands.
        write(dir.path(), &state(4), 3, |d| Ok(std::fs::write(d.join("w"), b"four")?)).unwrap();
        assert_eq!(read_state(&resolve(dir.path(), "latest").unwrap()).unwrap().step, 4);
    }

    #[test]
    fn retention_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for step in [1, 2, 3, 10] {
            write(dir.path(), &state(step), 2, |_| Ok(())).unwrap();
        }
        let steps: Vec<u64> = list(dir.path()).into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, [3, 10]);
        let err = resolve(dir.path(), "/nonexistent").unwrap_err().to_string();
        assert!(err.contains("not a checkpoint folder"), "{err}");
    }
}
