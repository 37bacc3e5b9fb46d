//! Run configuration: a TOML file, unknown keys rejected, values checked before any work.
//! `--set key=value` overrides any field (dotted path, TOML value) before validation.

use std::path::{Path, PathBuf};

use loc_core::checkpoint::MANIFEST_FILE;
use loc_core::device::{Precision, parse_device};
use loc_core::hypernet::{DEFAULT_TARGET_SUFFIXES, HypernetShape};
use loc_core::pipeline::Sampling;
use loc_data::config::{DataConfig, SourceConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("{}: `--set {item}`: {problem}", path.display())]
    Override { path: PathBuf, item: String, problem: String },
    #[error("{}: `{field}` {problem}", path.display())]
    Invalid { path: PathBuf, field: String, problem: String },
}

/// Which modules train.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// The InstructPix2Pix editor (UNet, and the text encoder unless frozen) on pairs with
    /// their text instructions.
    Editor,
    /// The hypernetwork `H` (and optionally the image encoder) with LoRA Reverse; the editor frozen.
    Hypernet,
}

/// A whole run. Every field is documented in `configs/README.md`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub stage: Stage,
    pub seed: u64,
    /// Where the run writes checkpoints, logs and reports (relative: from the working directory).
    pub output_dir: PathBuf,
    pub model: ModelConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    pub train: TrainConfig,
    #[serde(default)]
    pub objective: ObjectiveConfig,
    #[serde(default)]
    pub probe: ProbeConfig,
    /// The evaluation on quads at the end of a hypernet run.
    pub eval: Option<EvalConfig>,
    pub data: DataConfig,
}

/// A fresh model built from a preset instead of weights from a folder.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// The tiny world's sizes (see `crate::models`).
    Tiny,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A diffusers InstructPix2Pix folder (`unet/`, `text_encoder/`, `tokenizer/`,
    /// `scheduler/`, and `vae/` unless pixel space). The frozen `G` of a hypernet run; the
    /// starting point of an editor run.
    pub editor: Option<PathBuf>,
    /// Editor stage only: build a fresh editor instead of `editor`.
    pub editor_preset: Option<Preset>,
    /// Editor stage: train the text encoder too.
    #[serde(default = "yes")]
    pub train_text_encoder: bool,
    /// Editor stage, fresh editor: the prediction type of its scheduler (`epsilon`,
    /// `v_prediction`, `sample`). A folder's `scheduler_config.json` decides otherwise.
    pub prediction_type: Option<loc_core::schedule::PredictionType>,
    /// Hypernet stage: start `H` (and a trained image encoder) from this LoC checkpoint
    /// folder, e.g. stage 1's `OUTPUT/loc` for stage 2.
    pub hypernet_init: Option<PathBuf>,
    /// A transformers CLIP vision folder, `H`'s image encoder.
    pub image_encoder: Option<PathBuf>,
    /// Build a fresh image encoder instead of `image_encoder`.
    pub image_encoder_preset: Option<Preset>,
    /// Train the image encoder with `H` (a fresh encoder must).
    #[serde(default)]
    pub train_image_encoder: bool,
    /// UNet layers that get a generated LoRA: module paths ending in one of these.
    #[serde(default = "default_suffixes")]
    pub target_suffixes: Vec<String>,
    #[serde(default)]
    pub hypernet: HypernetShape,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    Constant,
    /// Cosine decay from the peak to 0 at the last step.
    Cosine,
}

/// AdamW with linear warmup.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub warmup_steps: u64,
    pub schedule: LrSchedule,
    /// Global gradient-norm clip (0: none).
    pub grad_clip_norm: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            learning_rate: 1e-4,
            weight_decay: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            warmup_steps: 0,
            schedule: LrSchedule::Constant,
            grad_clip_norm: 1.0,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub steps: u64,
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Where the run's models live (`cpu`, `cuda`, `cuda:1`, `wgpu`, `vulkan:0`); `--device`
    /// wins. Default: the CPU.
    #[serde(default)]
    pub device: Option<String>,
    /// The frozen models' dtype (`f32`, `bf16`, `f16`); `H` and its optimiser stay f32.
    #[serde(default)]
    pub precision: Precision,
    /// Recompute memory-bound activations in the backward pass instead of keeping them.
    #[serde(default)]
    pub gradient_checkpointing: bool,
    /// A checkpoint every this many steps (and at the end).
    pub checkpoint_every: u64,
    /// Checkpoints kept (oldest removed first).
    #[serde(default = "three")]
    pub keep_checkpoints: usize,
    /// Sample grids to TensorBoard every this many steps (0: never).
    #[serde(default)]
    pub sample_every: u64,
    /// A log line (and TensorBoard scalars) every this many steps.
    #[serde(default = "ten")]
    pub log_every: u64,
    /// Stop after this many non-finite losses in a row.
    #[serde(default = "ten")]
    pub max_bad_steps: u64,
}

/// The loss terms.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectiveConfig {
    /// Hypernet stage: weight of the reverse term (`-Δ`, condition B', target B); 0 = off.
    pub reverse_weight: f32,
    /// Hypernet stage: probability of presenting a pair as (A', A).
    pub exchange_prob: f64,
    /// Hypernet stage: the text prompt G gets with the LoRA.
    pub prompt: String,
    /// Editor stage: InstructPix2Pix conditioning dropout `p` (text dropped if r < 2p, image
    /// if p <= r < 3p).
    pub conditioning_dropout: f64,
    /// Hypernet stage: weight of the quad term `G(H(A, A'), B) -> B'` (0: off).
    pub quad_weight: f32,
    /// The quads of the quad term: `synthetic` or `manifest`.
    pub quads: Option<SourceConfig>,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        Self {
            reverse_weight: 1.0,
            exchange_prob: 0.5,
            prompt: String::new(),
            conditioning_dropout: 0.05,
            quad_weight: 0.0,
            quads: None,
        }
    }
}

/// The held-out denoising probe: fixed pairs, timesteps and noise.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// Validation pairs probed (fewer if the validation split is smaller).
    pub pairs: usize,
    /// Training timesteps probed.
    pub timesteps: Vec<usize>,
    /// Probe every this many steps (and at step 0 and the end).
    pub every: u64,
    /// Held-out quads of `[eval] quads` (the first ones) also probed, `B` towards `B'`; 0: none.
    pub quads: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self { pairs: 16, timesteps: vec![100, 300, 500, 700, 900], every: 50, quads: 0 }
    }
}

/// Sampled evaluation on quads `(A, A', B, B')` at the end of a hypernet run.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// A data set that yields quads: `synthetic` or `manifest`.
    pub quads: SourceConfig,
    /// Quads evaluated (at most the set's size).
    pub count: usize,
    /// `steps`, `text_guidance` (`s_T` for G with a text instruction), `image_guidance`,
    /// `lora_guidance` (LoC's; unset: the LoRA in every branch, text guidance on the prompt).
    #[serde(flatten)]
    pub sampling: Sampling,
    /// Examples in the contact sheet.
    #[serde(default = "eight")]
    pub sheet: usize,
    /// A CLIP folder (transformers layout) for CLIP-I and Visual CLIP.
    pub clip: Option<PathBuf>,
    /// A DINO ViT folder (transformers `ViTModel`) for the DINO metric.
    pub dino: Option<PathBuf>,
}

fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}
fn three() -> usize {
    3
}
fn eight() -> usize {
    8
}
fn ten() -> u64 {
    10
}
fn default_suffixes() -> Vec<String> {
    DEFAULT_TARGET_SUFFIXES.iter().map(|s| s.to_string()).collect()
}

impl Config {
    /// Reads `path`, applies `overrides` (`key=value`, TOML values; bare words are strings),
    /// and validates the result.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        Self::from_toml(&text, path, overrides)
    }

    /// [`load`](Self::load) from text; `path` names the source in errors.
    pub fn from_toml(text: &str, path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let parse_err = |source| ConfigError::Parse { path: path.to_path_buf(), source: Box::new(source) };
        let mut table: toml::Table = toml::from_str(text).map_err(parse_err)?;
        for item in overrides {
            apply_override(&mut table, item).map_err(|problem| ConfigError::Override {
                path: path.to_path_buf(),
                item: item.clone(),
                problem,
            })?;
        }
        let config: Config = table.try_into().map_err(parse_err)?;
        config.validate().map_err(|(field, problem)| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            problem,
        })?;
        Ok(config)
    }

    /// The resolved configuration as TOML (saved with every checkpoint).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a serialisable configuration")
    }

    /// Every section's checks, in file order; the first failure names its field.
    fn validate(&self) -> Result<(), Invalid> {
        self.model.validate(self.stage)?;
        crate::cache::validate(&self.data, self.stage == Stage::Hypernet, self.model.train_image_encoder)
            .map_err(|(field, problem)| (field.to_string(), problem))?;
        self.optim.validate()?;
        self.train.validate()?;
        self.objective.validate(self.stage)?;
        self.probe.validate(self.eval.is_some())?;
        if let Some(eval) = &self.eval {
            eval.validate()?;
        }
        self.data.validate()
    }
}

/// A field that fails validation (its dotted path) and the problem.
type Invalid = (String, String);

fn invalid(field: &str, problem: impl Into<String>) -> Result<(), Invalid> {
    Err((field.to_string(), problem.into()))
}

fn positive(field: &str, value: u64) -> Result<(), Invalid> {
    if value == 0 { invalid(field, "must be at least 1") } else { Ok(()) }
}

/// `objective.quads` and `eval.quads` must yield quads.
fn quad_source(field: &str, source: &SourceConfig) -> Result<(), Invalid> {
    match source {
        SourceConfig::Synthetic { .. } | SourceConfig::Manifest { .. } => Ok(()),
        other => invalid(field, format!("must yield quads (synthetic or manifest), got `{}`", other.kind())),
    }
}

impl ModelConfig {
    fn validate(&self, stage: Stage) -> Result<(), Invalid> {
        match stage {
            Stage::Editor if self.hypernet_init.is_some() => {
                return invalid("model.hypernet_init", "only applies to the hypernet stage");
            }
            Stage::Editor => match (&self.editor, self.editor_preset) {
                (None, None) => return invalid("model.editor", "or `model.editor_preset` is required"),
                (Some(_), Some(_)) => return invalid("model.editor_preset", "conflicts with `model.editor`"),
                _ => {}
            },
            Stage::Hypernet => self.validate_hypernet_stage()?,
        }
        if self.prediction_type.is_some() && self.editor_preset.is_none() {
            return invalid("model.prediction_type", "only applies to a fresh editor (`editor_preset`)");
        }
        if self.target_suffixes.is_empty() {
            return invalid("model.target_suffixes", "must name at least one layer suffix");
        }
        self.hypernet.check().map_err(|(field, problem)| (format!("model.hypernet.{field}"), problem))
    }

    /// The frozen editor, where `H` starts, and its image encoder.
    fn validate_hypernet_stage(&self) -> Result<(), Invalid> {
        if self.editor.is_none() {
            return invalid("model.editor", "is required by the hypernet stage (the frozen G)");
        }
        if self.editor_preset.is_some() {
            return invalid("model.editor_preset", "only applies to the editor stage");
        }
        if let Some(init) = &self.hypernet_init
            && !init.join(MANIFEST_FILE).exists()
        {
            return invalid("model.hypernet_init", format!("{} holds no {MANIFEST_FILE}", init.display()));
        }
        match (&self.image_encoder, self.image_encoder_preset) {
            (None, None) => invalid("model.image_encoder", "or `model.image_encoder_preset` is required"),
            (Some(_), Some(_)) => invalid("model.image_encoder_preset", "conflicts with `model.image_encoder`"),
            (None, Some(_)) if !self.train_image_encoder => {
                invalid("model.train_image_encoder", "must be true for a fresh (preset) encoder")
            }
            _ => Ok(()),
        }
    }
}

impl OptimConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return invalid("optim.learning_rate", format!("must be a positive number, got {}", self.learning_rate));
        }
        for (field, value) in [("optim.beta1", self.beta1), ("optim.beta2", self.beta2)] {
            if !(0.0..1.0).contains(&value) {
                return invalid(field, format!("must be in [0, 1), got {value}"));
            }
        }
        for (field, value) in [
            ("optim.weight_decay", self.weight_decay),
            ("optim.epsilon", self.epsilon),
            ("optim.grad_clip_norm", self.grad_clip_norm),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return invalid(field, format!("must be >= 0, got {value}"));
            }
        }
        Ok(())
    }
}

impl TrainConfig {
    fn validate(&self) -> Result<(), Invalid> {
        positive("train.steps", self.steps)?;
        positive("train.batch_size", self.batch_size as u64)?;
        positive("train.grad_accum", self.grad_accum as u64)?;
        positive("train.checkpoint_every", self.checkpoint_every)?;
        positive("train.keep_checkpoints", self.keep_checkpoints as u64)?;
        if let Some(spec) = &self.device {
            parse_device(spec).map_err(|error| ("train.device".to_string(), error.to_string()))?;
        }
        positive("train.log_every", self.log_every)?;
        positive("train.max_bad_steps", self.max_bad_steps)
    }
}

impl ObjectiveConfig {
    fn validate(&self, stage: Stage) -> Result<(), Invalid> {
        if !(self.reverse_weight.is_finite() && self.reverse_weight >= 0.0) {
            return invalid("objective.reverse_weight", format!("must be >= 0, got {}", self.reverse_weight));
        }
        if !(0.0..=1.0).contains(&self.exchange_prob) {
            return invalid("objective.exchange_prob", format!("must be in [0, 1], got {}", self.exchange_prob));
        }
        if !(0.0..=1.0 / 3.0).contains(&self.conditioning_dropout) {
            let problem = format!("must be in [0, 1/3], got {}", self.conditioning_dropout);
            return invalid("objective.conditioning_dropout", problem);
        }
        if !(self.quad_weight.is_finite() && self.quad_weight >= 0.0) {
            return invalid("objective.quad_weight", format!("must be >= 0, got {}", self.quad_weight));
        }
        match (&self.quads, self.quad_weight > 0.0) {
            (None, true) => return invalid("objective.quads", "is required when objective.quad_weight > 0"),
            (Some(quads), _) => quad_source("objective.quads", quads)?,
            _ => {}
        }
        if self.quad_weight > 0.0 && stage != Stage::Hypernet {
            return invalid("objective.quad_weight", "only applies to the hypernet stage");
        }
        Ok(())
    }
}

impl ProbeConfig {
    fn validate(&self, has_eval: bool) -> Result<(), Invalid> {
        positive("probe.pairs", self.pairs as u64)?;
        positive("probe.every", self.every)?;
        if self.timesteps.is_empty() {
            return invalid("probe.timesteps", "must list at least one timestep");
        }
        if self.quads > 0 && !has_eval {
            return invalid("probe.quads", "draws from [eval] quads: add an [eval] section or set it to 0");
        }
        Ok(())
    }
}

impl EvalConfig {
    fn validate(&self) -> Result<(), Invalid> {
        quad_source("eval.quads", &self.quads)?;
        positive("eval.count", self.count as u64)?;
        positive("eval.steps", self.sampling.steps as u64)?;
        for (field, dir) in [("eval.clip", &self.clip), ("eval.dino", &self.dino)] {
            if let Some(missing) =
                dir.iter().flat_map(|d| [d.join("config.json"), d.join("model.safetensors")]).find(|f| !f.exists())
            {
                return invalid(field, format!("{} does not exist", missing.display()));
            }
        }
        Ok(())
    }
}

/// Sets `key.path=value` in `table` (`data.sets.0.weight=2` indexes arrays); the value is
/// parsed as TOML, or taken as a string.
fn apply_override(table: &mut toml::Table, item: &str) -> Result<(), String> {
    let (key, raw) = item.split_once('=').ok_or("expected key=value")?;
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut root = toml::Value::Table(std::mem::take(table));
    let result = set_path(&mut root, &key.trim().split('.').collect::<Vec<_>>(), value);
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    result
}

fn set_path(node: &mut toml::Value, path: &[&str], value: toml::Value) -> Result<(), String> {
    let (part, rest) = path.split_first().ok_or("empty key")?;
    let child = match node {
        toml::Value::Table(t) if rest.is_empty() => {
            t.insert(part.to_string(), value);
            return Ok(());
        }
        toml::Value::Table(t) => t.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new())),
        toml::Value::Array(items) => {
            let len = items.len();
            let index: usize = part.parse().map_err(|_| format!("`{part}`: expected an index into an array"))?;
            let slot = items.get_mut(index).ok_or_else(|| format!("index {index} is past the array's {len} items"))?;
            if rest.is_empty() {
                *slot = value;
                return Ok(());
            }
            slot
        }
        _ => return Err(format!("`{part}`: its parent is neither a table nor an array")),
    };
    set_path(child, rest, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const MINIMAL: &str = r#"
stage = "hypernet"
seed = 1
output_dir = "out"
[model]
editor = "assets/tiny-editor"
image_encoder_preset = "tiny"
train_image_encoder = true
[train]
steps = 10
batch_size = 2
checkpoint_every = 5
[data]
resolution = 16
[[data.sets]]
name = "world"
source = { kind = "synthetic", len = 100 }
"#;

    fn load(text: &str, overrides: &[&str]) -> Result<Config, ConfigError> {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        Config::from_toml(text, Path::new("run.toml"), &overrides)
    }

    #[test]
    fn defaults_fill_what_a_config_leaves_out() {
        let config = load(MINIMAL, &[]).unwrap();
        assert_eq!(config.stage, Stage::Hypernet);
        assert_eq!(config.objective.reverse_weight, 1.0);
        assert_eq!(config.optim.schedule, LrSchedule::Constant);
        assert_eq!(config.model.target_suffixes.len(), 4);
        assert_eq!(config.train.grad_accum, 1);
    }

    #[test]
    fn overrides_set_nested_fields_before_validation() {
        let config = load(MINIMAL, &["objective.reverse_weight=0", "optim.schedule=cosine", "train.steps=7"]).unwrap();
        assert_eq!(config.objective.reverse_weight, 0.0);
        assert_eq!(config.optim.schedule, LrSchedule::Cosine);
        assert_eq!(config.train.steps, 7);
        let err = load(MINIMAL, &["train.steps=0"]).unwrap_err().to_string();
        assert!(err.contains("`train.steps` must be at least 1"), "{err}");
        let err = load(MINIMAL, &["train.stepz=3"]).unwrap_err().to_string();
        assert!(err.contains("stepz"), "{err}");
        let config = load(MINIMAL, &["data.sets.0.weight=2.5", "data.sets.0.source.len=7"]).unwrap();
        assert_eq!(config.data.sets[0].weight, 2.5);
        let err = load(MINIMAL, &["data.sets.3.weight=1"]).unwrap_err().to_string();
        assert!(err.contains("index 3 is past the array's 1 items"), "{err}");
        let err = load(MINIMAL, &["seed"]).unwrap_err().to_string();
        assert!(err.contains("--set seed") && err.contains("key=value"), "{err}");
    }

    #[test]
    fn a_resolved_config_round_trips_through_toml() {
        let config = load(MINIMAL, &["objective.exchange_prob=0.25"]).unwrap();
        let again = load(&config.to_toml(), &[]).unwrap();
        assert_eq!(again.objective.exchange_prob, 0.25);
        assert_eq!(again.to_toml(), config.to_toml());
    }

    #[test]
    fn invalid_values_are_named() {
        let cases = [
            ("objective.exchange_prob=2", "`objective.exchange_prob` must be in [0, 1]"),
            ("optim.learning_rate=-1", "`optim.learning_rate` must be a positive number"),
            ("model.train_image_encoder=false", "`model.train_image_encoder` must be true"),
            ("model.hypernet.width=30", "`model.hypernet.width` 30 is not a multiple of heads = 8"),
            ("stage=\"editor\"", "`model.editor_preset` conflicts"),
            ("probe.quads=8", "`probe.quads` draws from [eval] quads"),
            ("train.device=\"tpu\"", "`train.device` unknown device `tpu`"),
            ("train.precision=\"fp8\"", "precision"),
            ("data.cache=\"c\"", "`data.cache` a trained image encoder changes its features"),
        ];
        for (item, expected) in cases {
            let mut items = vec![item];
            if item.starts_with("stage") {
                items.push("model.editor_preset=\"tiny\"");
            }
            let err = load(MINIMAL, &items).unwrap_err().to_string();
            assert!(err.contains(expected), "{item}: {err}");
        }
        let err = load(&MINIMAL.replace("stage = \"hypernet\"", "stage = \"hypernet\"\nlearning_rate = 3"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("learning_rate"), "{err}");
        let frozen =
            MINIMAL.replace("image_encoder_preset = \"tiny\"\ntrain_image_encoder = true", "image_encoder = \"enc\"");
        assert!(load(&frozen, &["data.cache=\"c\""]).is_ok());
        let err = load(&frozen, &["data.cache=\"c\"", "data.random_crop=true"]).unwrap_err().to_string();
        assert!(err.contains("`data.cache` random crops change every step's images"), "{err}");
        let err = load(&frozen, &["data.cache=\"c\"", "data.sets.0.name=\"../x\""]).unwrap_err().to_string();
        assert!(err.contains("`../x` cannot name a folder inside the cache"), "{err}");
        let eval = "\n[eval]\nquads = { kind = \"synthetic\", len = 4 }\ncount = 4\nclip = \"no/such/clip\"\n";
        let err = load(&format!("{MINIMAL}{eval}"), &[]).unwrap_err().to_string();
        assert!(err.contains("`eval.clip`") && err.contains("no/such/clip/config.json"), "{err}");
    }
}
