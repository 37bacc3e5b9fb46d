//! Noise schedules, as diffusers' `scheduler_config.json` describes them: the DDPM training
//! schedule ([`NoiseSchedule`]: noisy inputs and the target the model predicts) and the
//! DDIM sampler ([`Ddim`]).

mod ddim;
mod ddpm;

pub use ddim::Ddim;
pub use ddpm::NoiseSchedule;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    Linear,
    /// Linear in `sqrt(beta)` (Stable Diffusion).
    ScaledLinear,
    /// Cosine `alpha_bar` (Nichol & Dhariwal), betas capped at 0.999.
    SquaredcosCapV2,
}

/// What the model predicts.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// The noise (Stable Diffusion).
    Epsilon,
    /// `v = sqrt(ᾱ) ε - sqrt(1-ᾱ) x0`.
    VPrediction,
    /// The clean sample `x0`.
    Sample,
}

/// How inference timesteps are spread over the training ones.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    Leading,
    Trailing,
    Linspace,
}

/// `scheduler/scheduler_config.json` (any diffusers scheduler class; unknown keys ignored).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SchedulerConfig {
    #[serde(default = "thousand")]
    pub num_train_timesteps: usize,
    #[serde(default = "beta_start")]
    pub beta_start: f64,
    #[serde(default = "beta_end")]
    pub beta_end: f64,
    #[serde(default = "linear")]
    pub beta_schedule: BetaSchedule,
    #[serde(default = "epsilon")]
    pub prediction_type: PredictionType,
    /// DDIM: clamp the predicted `x0` to `±clip_sample_range`.
    #[serde(default = "yes")]
    pub clip_sample: bool,
    #[serde(default = "one")]
    pub clip_sample_range: f64,
    /// DDIM: `ᾱ` before the first step is 1 (else `ᾱ_0`).
    #[serde(default = "yes")]
    pub set_alpha_to_one: bool,
    #[serde(default)]
    pub steps_offset: usize,
    #[serde(default = "leading")]
    pub timestep_spacing: TimestepSpacing,
}

fn thousand() -> usize {
    1000
}
fn beta_start() -> f64 {
    0.0001
}
fn beta_end() -> f64 {
    0.02
}
fn linear() -> BetaSchedule {
    BetaSchedule::Linear
}
fn epsilon() -> PredictionType {
    PredictionType::Epsilon
}
fn yes() -> bool {
    true
}
fn one() -> f64 {
    1.0
}
fn leading() -> TimestepSpacing {
    TimestepSpacing::Leading
}

impl SchedulerConfig {
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let config: Self = crate::weights::read_config(path)?;
        if config.num_train_timesteps < 2 {
            let problem = format!("must be at least 2, got {}", config.num_train_timesteps);
            return Err(ModelError::Config { path: path.to_path_buf(), field: "num_train_timesteps".into(), problem });
        }
        Ok(config)
    }

    /// Stable Diffusion 1.x: 1000 steps, `scaled_linear` 0.00085-0.012, epsilon.
    pub fn sd15() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            prediction_type: PredictionType::Epsilon,
            clip_sample: false,
            clip_sample_range: 1.0,
            set_alpha_to_one: false,
            steps_offset: 1,
            timestep_spacing: TimestepSpacing::Leading,
        }
    }

    /// `ᾱ_t = Π (1 - β_s)` for every training timestep.
    pub fn alphas_cumprod(&self) -> Vec<f64> {
        let n = self.num_train_timesteps;
        let betas: Vec<f64> = match self.beta_schedule {
            BetaSchedule::Linear => linspace(self.beta_start, self.beta_end, n),
            BetaSchedule::ScaledLinear => {
                linspace(self.beta_start.sqrt(), self.beta_end.sqrt(), n).into_iter().map(|b| b * b).collect()
            }
            BetaSchedule::SquaredcosCapV2 => {
                let alpha_bar = |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
                (0..n)
                    .map(|i| (1.0 - alpha_bar((i + 1) as f64 / n as f64) / alpha_bar(i as f64 / n as f64)).min(0.999))
                    .collect()
            }
        };
        let mut product = 1.0;
        betas
            .into_iter()
            .map(|b| {
                product *= 1.0 - b;
                product
            })
            .collect()
    }
}

fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    (0..n).map(|i| start + (end - start) * i as f64 / (n - 1) as f64).collect()
}
