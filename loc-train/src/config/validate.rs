//! Each section's checks; an error names the field by its dotted path.

use loc_core::checkpoint::MANIFEST_FILE;
use loc_core::device::parse_device;
use loc_core::weights::weights_file;
use loc_data::config::SourceConfig;

use super::{
    Config, EvalConfig, GradientSyncKind, ModelConfig, ObjectiveConfig, OptimConfig, ProbeConfig, Stage, TrainConfig,
};

impl Config {
    /// Every section's checks, in file order; the first failure names its field.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
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
        SourceConfig::Synthetic(world) => {
            world.drawn_kinds().map(drop).map_err(|(inner, problem)| (format!("{field}.{inner}"), problem))
        }
        SourceConfig::Manifest { .. } => Ok(()),
        other => invalid(field, format!("must yield quads (synthetic or manifest), got `{}`", other.kind())),
    }
}

impl ModelConfig {
    pub(super) fn validate(&self, stage: Stage) -> Result<(), Invalid> {
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
    pub(super) fn validate(&self) -> Result<(), Invalid> {
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
    /// Whether a data-parallel run on `specs` can split `batch_size` and synchronise as asked
    /// (`train.devices`, or `--devices` given on the command line).
    pub fn check_devices(&self, specs: &[String]) -> Result<(), String> {
        for spec in specs {
            parse_device(spec).map_err(|error| error.to_string())?;
        }
        let n = specs.len();
        if n > 1 && !self.batch_size.is_multiple_of(n) {
            return Err(format!(
                "{n} devices cannot share train.batch_size = {} evenly: make it a multiple of {n}",
                self.batch_size
            ));
        }
        if self.gradient_sync == GradientSyncKind::Nccl {
            if let Some(other) = specs.iter().find(|s| !(s.as_str() == "cuda" || s.starts_with("cuda:"))) {
                return Err(format!("train.gradient_sync = \"nccl\" runs on CUDA devices only, not `{other}`"));
            }
            let distinct: std::collections::BTreeSet<&str> =
                specs.iter().map(|s| if s == "cuda" { "cuda:0" } else { s.as_str() }).collect();
            if distinct.len() < n {
                return Err("train.gradient_sync = \"nccl\" needs distinct GPUs".into());
            }
        }
        Ok(())
    }

    pub(super) fn validate(&self) -> Result<(), Invalid> {
        positive("train.steps", self.steps)?;
        positive("train.batch_size", self.batch_size as u64)?;
        positive("train.grad_accum", self.grad_accum as u64)?;
        positive("train.checkpoint_every", self.checkpoint_every)?;
        positive("train.keep_checkpoints", self.keep_checkpoints as u64)?;
        if let Some(spec) = &self.device {
            parse_device(spec).map_err(|error| ("train.device".to_string(), error.to_string()))?;
        }
        if !self.devices.is_empty() {
            if self.device.is_some() {
                return invalid("train.devices", "and train.device both name devices: keep one");
            }
            self.check_devices(&self.devices).map_err(|problem| ("train.devices".to_string(), problem))?;
        }
        if let Some(decay) = self.ema_decay
            && !(decay > 0.0 && decay < 1.0)
        {
            return invalid("train.ema_decay", format!("must be in (0, 1), got {decay}"));
        }
        positive("train.log_every", self.log_every)?;
        positive("train.max_bad_steps", self.max_bad_steps)
    }
}

impl ObjectiveConfig {
    pub(super) fn validate(&self, stage: Stage) -> Result<(), Invalid> {
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
        if !(self.compose_weight.is_finite() && self.compose_weight >= 0.0) {
            return invalid("objective.compose_weight", format!("must be >= 0, got {}", self.compose_weight));
        }
        match (&self.compose_world, self.compose_weight > 0.0) {
            (None, true) => return invalid("objective.compose_world", "is required when objective.compose_weight > 0"),
            (Some(world), _) => {
                let kinds = world
                    .drawn_kinds()
                    .map_err(|(inner, problem)| (format!("objective.compose_world.{inner}"), problem))?;
                if !(kinds.iter().any(|k| k.acts_on_pixels()) && kinds.iter().any(|k| !k.acts_on_pixels())) {
                    let problem = "must draw a scene kind and a pixel kind, to chain one after the other";
                    return invalid("objective.compose_world.kinds", problem);
                }
            }
            _ => {}
        }
        if self.compose_weight > 0.0 && stage != Stage::Hypernet {
            return invalid("objective.compose_weight", "only applies to the hypernet stage");
        }
        Ok(())
    }
}

impl ProbeConfig {
    pub(super) fn validate(&self, has_eval: bool) -> Result<(), Invalid> {
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
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        quad_source("eval.quads", &self.quads)?;
        positive("eval.count", self.count as u64)?;
        positive("eval.steps", self.sampling.steps as u64)?;
        for (field, dir) in self.model_dirs() {
            if let Some(missing) =
                dir.iter().flat_map(|d| [d.join("config.json"), weights_file(d, "model")]).find(|f| !f.exists())
            {
                return invalid(field, format!("{} does not exist", missing.display()));
            }
        }
        Ok(())
    }
}
