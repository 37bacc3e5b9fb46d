//! Run configuration: a TOML file, unknown keys rejected, values checked before any work.
//! `--set key=value` overrides any field (dotted path, TOML value) before validation.

use std::path::{Path, PathBuf};

use loc_core::device::Precision;
use loc_core::hypernet::{DEFAULT_TARGET_SUFFIXES, HypernetShape};
use loc_core::pipeline::Sampling;
use loc_data::config::{DataConfig, SourceConfig, WorldConfig};
use loc_eval::metrics::embedding::MetricPaths;
use serde::{Deserialize, Serialize};

use overrides::apply_override;

mod overrides;
mod validate;

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
    #[error("{}: {}", path.display(), missing_paths(missing))]
    Missing { path: PathBuf, missing: Vec<(String, PathBuf)> },
}

/// "N paths this run needs do not exist:", then a line per field and path.
fn missing_paths(missing: &[(String, PathBuf)]) -> String {
    let head = match missing.len() {
        1 => "a path this run needs does not exist:".to_string(),
        n => format!("{n} paths this run needs do not exist:"),
    };
    missing.iter().fold(head, |text, (field, path)| format!("{text}\n  `{field}`: {}", path.display()))
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

/// Gradient synchronisation across `train.devices` (see [`crate::sync`]).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum GradientSyncKind {
    /// The mean taken on the first device: any backend, and the only choice off CUDA.
    #[default]
    Host,
    /// burn's all-reduce through NCCL inside `backward()` (the `cuda` feature, CUDA devices).
    Nccl,
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
    /// Data-parallel training, one replica per device (`["cuda:0", "cuda:1"]`): the global
    /// `batch_size` is split evenly between them. `--devices` wins; empty: the one `device`.
    #[serde(default)]
    pub devices: Vec<String>,
    /// How the devices' gradients are averaged: `host` (any backend) or `nccl` (CUDA).
    #[serde(default)]
    pub gradient_sync: GradientSyncKind,
    /// The frozen models' dtype (`f32`, `bf16`, `f16`); `H` and its optimiser stay f32.
    #[serde(default)]
    pub precision: Precision,
    /// Recompute memory-bound activations in the backward pass instead of keeping them.
    #[serde(default)]
    pub gradient_checkpointing: bool,
    /// Keep an exponential moving average of the trained weights with this decay (e.g.
    /// 0.999): saved in checkpoints, exported, and evaluated beside the raw weights.
    #[serde(default)]
    pub ema_decay: Option<f64>,
    /// Warm the average's decay up as `1 - (1 + t)^(-2/3)` instead of `(1 + t) / (10 + t)`.
    #[serde(default)]
    pub ema_warmup: bool,
    /// A checkpoint every this many steps (and at the end).
    #[serde(default = "thousand")]
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
    /// Hypernet stage: weight of the composition term `G(H(A, e1(A)) + H(A, e2(A)), B) ->
    /// e2(e1(B))`, which asks the sum of two LoRAs to make both edits (0: off).
    pub compose_weight: f32,
    /// The world whose chained items (a scene edit, then a pixel edit) feed the composition
    /// term; its kinds must include both sorts.
    pub compose_world: Option<WorldConfig>,
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
            compose_weight: 0.0,
            compose_world: None,
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
    /// An LPIPS folder (`scripts/convert_lpips_weights.py`) for LPIPS.
    pub lpips: Option<PathBuf>,
    /// pytorch-fid's Inception-v3 folder (`scripts/convert_fid_inception.py`) for FID.
    pub inception: Option<PathBuf>,
}

impl EvalConfig {
    /// The metric models' folders this section names.
    pub fn metric_paths(&self) -> MetricPaths {
        MetricPaths {
            clip: self.clip.clone(),
            dino: self.dino.clone(),
            lpips: self.lpips.clone(),
            inception: self.inception.clone(),
        }
    }

    /// Each metric model's folder with its field: checked at load and before a run.
    fn model_dirs(&self) -> [(&'static str, &Option<PathBuf>); 4] {
        [
            ("eval.clip", &self.clip),
            ("eval.dino", &self.dino),
            ("eval.lpips", &self.lpips),
            ("eval.inception", &self.inception),
        ]
    }
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
fn thousand() -> u64 {
    1000
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

    /// Every file and folder the run reads (weights, data, evaluation models) that does not
    /// exist, all in one error; `path` names the configuration. Run before any work.
    pub fn check_paths(&self, path: &Path) -> Result<(), ConfigError> {
        let m = &self.model;
        let mut needed: Vec<(String, &Path)> = Vec::new();
        let model_dirs = [
            ("model.editor", &m.editor),
            ("model.image_encoder", &m.image_encoder),
            ("model.hypernet_init", &m.hypernet_init),
        ];
        let eval_dirs = self.eval.iter().flat_map(EvalConfig::model_dirs);
        for (field, dir) in model_dirs.into_iter().chain(eval_dirs) {
            needed.extend(dir.as_deref().map(|d| (field.to_string(), d)));
        }
        for (i, set) in self.data.sets.iter().enumerate() {
            needed.extend(set.source.inputs().into_iter().map(|p| (format!("data.sets.{i}.source"), p)));
        }
        if let Some(quads) = &self.objective.quads {
            needed.extend(quads.inputs().into_iter().map(|p| ("objective.quads".to_string(), p)));
        }
        if let Some(eval) = &self.eval {
            needed.extend(eval.quads.inputs().into_iter().map(|p| ("eval.quads".to_string(), p)));
        }
        let missing: Vec<(String, PathBuf)> =
            needed.into_iter().filter(|(_, p)| !p.exists()).map(|(f, p)| (f, p.to_path_buf())).collect();
        if missing.is_empty() { Ok(()) } else { Err(ConfigError::Missing { path: path.to_path_buf(), missing }) }
    }

    /// The resolved configuration as TOML (saved with every checkpoint).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a serialisable configuration")
    }
}

#[cfg(test)]
mod tests;
