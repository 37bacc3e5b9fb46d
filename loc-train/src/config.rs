//! Run configuration: a TOML file, unknown keys rejected, values checked before any work.

use std::path::{Path, PathBuf};

use loc_data::config::DataConfig;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("{}: `{field}` {problem}", path.display())]
    Invalid { path: PathBuf, field: String, problem: String },
}

/// What a run does.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// LoRA Reverse on a toy linear world ([`crate::toy`]).
    LoraToy,
}

/// A whole run. Every field is documented in `configs/README.md`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub stage: Stage,
    pub seed: u64,
    /// Where the run writes its results (relative paths: from the working directory).
    pub output_dir: PathBuf,
    #[serde(default)]
    pub toy: ToyConfig,
    /// Data sets and their pipeline (see `loc_data::config`).
    pub data: Option<DataConfig>,
}

/// The toy world and its hypernetwork (`stage = "lora-toy"`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToyConfig {
    /// Channels of a toy pixel.
    pub dim: usize,
    /// Pixels of a toy image.
    pub pixels: usize,
    /// Number of edit types in the world.
    pub edits: usize,
    /// LoRA rank the hypernetwork generates.
    pub rank: usize,
    /// Hidden width of the hypernetwork.
    pub hidden: usize,
    pub steps: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Weight of the reverse term (`-Δ`, condition B', target B); 0 trains forward only.
    pub reverse_weight: f32,
    /// Probability of presenting a pair as (A', A).
    pub exchange_prob: f64,
    /// Held-out quads for the final evaluation.
    pub eval_quads: usize,
    /// Print a line every this many steps.
    pub log_every: usize,
}

impl Default for ToyConfig {
    fn default() -> Self {
        Self {
            dim: 16,
            pixels: 32,
            edits: 6,
            rank: 4,
            hidden: 64,
            steps: 400,
            batch_size: 32,
            learning_rate: 3e-3,
            reverse_weight: 1.0,
            exchange_prob: 0.5,
            eval_quads: 256,
            log_every: 50,
        }
    }
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        let config: Config = toml::from_str(&text)
            .map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source: Box::new(source) })?;
        config.validate().map_err(|(field, problem)| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            problem,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        self.validate_toy().map_err(|(field, problem)| (field.to_string(), problem))?;
        self.data.as_ref().map_or(Ok(()), DataConfig::validate)
    }

    fn validate_toy(&self) -> Result<(), (&'static str, String)> {
        let toy = &self.toy;
        let positive = [
            ("toy.dim", toy.dim),
            ("toy.pixels", toy.pixels),
            ("toy.edits", toy.edits),
            ("toy.rank", toy.rank),
            ("toy.hidden", toy.hidden),
            ("toy.steps", toy.steps),
            ("toy.batch_size", toy.batch_size),
            ("toy.eval_quads", toy.eval_quads),
            ("toy.log_every", toy.log_every),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err((field, "must be at least 1".into()));
            }
        }
        if !(toy.learning_rate.is_finite() && toy.learning_rate > 0.0) {
            return Err(("toy.learning_rate", format!("must be a positive number, got {}", toy.learning_rate)));
        }
        if !(toy.reverse_weight.is_finite() && toy.reverse_weight >= 0.0) {
            return Err(("toy.reverse_weight", format!("must be >= 0, got {}", toy.reverse_weight)));
        }
        if !(0.0..=1.0).contains(&toy.exchange_prob) {
            return Err(("toy.exchange_prob", format!("must be in [0, 1], got {}", toy.exchange_prob)));
        }
        if toy.rank > toy.dim {
            return Err(("toy.rank", format!("{} exceeds toy.dim = {}", toy.rank, toy.dim)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    #[test]
    fn the_shipped_tiny_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/tiny.toml");
        let config = Config::load(&path).unwrap();
        assert_eq!(config.stage, Stage::LoraToy);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected_with_the_field_name() {
        let base = "stage = \"lora-toy\"\nseed = 1\noutput_dir = \"x\"\n";
        assert!(load_str(base).is_ok());
        let err = load_str(&format!("{base}[toy]\nrnak = 4\n")).unwrap_err().to_string();
        assert!(err.contains("rnak"), "{err}");
        let err = load_str(&format!("{base}[toy]\nlearning_rate = -1.0\n")).unwrap_err().to_string();
        assert!(err.contains("toy.learning_rate"), "{err}");
        let err = load_str(&format!("{base}[toy]\nexchange_prob = 1.5\n")).unwrap_err().to_string();
        assert!(err.contains("toy.exchange_prob"), "{err}");
        let err = load_str("seed = 1\noutput_dir = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("stage"), "{err}");
        let data = "[data]\nresolution = 32\n[[data.sets]]\nname = \"w\"\nsource = { kind = \"synthetic\", len = 8 }\n";
        assert!(load_str(&format!("{base}{data}")).is_ok());
        let err =
            load_str(&format!("{base}{}", data.replace("len = 8", "len = 8, colour = 1"))).unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
        let err =
            load_str(&format!("{base}{}", data.replace("resolution = 32", "resolution = 2"))).unwrap_err().to_string();
        assert!(err.contains("data.resolution"), "{err}");
        let twice = format!("{base}{data}[[data.sets]]\nname = \"w\"\nsource = {{ kind = \"synthetic\", len = 8 }}\n");
        let err = load_str(&twice).unwrap_err().to_string();
        assert!(err.contains("data.sets[1].name"), "{err}");
    }
}
