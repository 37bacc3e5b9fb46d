//! diffusers `DDIMScheduler`: deterministic (η = 0) or stochastic sampling steps.
//!
//! Follows diffusers `src/diffusers/schedulers/scheduling_ddim.py`: `DDIMScheduler.set_timesteps`
//! and `DDIMScheduler.step`.

use burn::prelude::*;

use super::{NoiseSchedule, PredictionType, SchedulerConfig, TimestepSpacing};

#[derive(Clone, Debug)]
pub struct Ddim {
    pub schedule: NoiseSchedule,
    /// Inference timesteps, descending.
    pub timesteps: Vec<usize>,
    step_ratio: usize,
    final_alpha_cumprod: f64,
    clip_sample: Option<f64>,
}

impl Ddim {
    /// `steps` inference steps spaced as the config says (`set_timesteps`).
    pub fn new(config: &SchedulerConfig, steps: usize) -> Self {
        let schedule = NoiseSchedule::new(config);
        let train = config.num_train_timesteps;
        let steps = steps.clamp(1, train);
        let timesteps: Vec<usize> = match config.timestep_spacing {
            TimestepSpacing::Leading => {
                let ratio = train / steps;
                (0..steps).rev().map(|i| i * ratio + config.steps_offset).collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = train as f64 / steps as f64;
                (1..=steps).rev().map(|i| ((i as f64 * ratio).round_ties_even() as usize).saturating_sub(1)).collect()
            }
            TimestepSpacing::Linspace => (0..steps)
                .rev()
                .map(|i| (i as f64 * (train - 1) as f64 / (steps - 1).max(1) as f64).round_ties_even() as usize)
                .collect(),
        };
        let final_alpha_cumprod = if config.set_alpha_to_one { 1.0 } else { schedule.alphas_cumprod[0] };
        let clip_sample = config.clip_sample.then_some(config.clip_sample_range);
        Self { schedule, timesteps, step_ratio: train / steps, final_alpha_cumprod, clip_sample }
    }

    /// `x_{t-1}` from `x_t` and the model output at timestep `t` (η = 0).
    pub fn step(&self, model_output: Tensor<4>, t: usize, sample: Tensor<4>) -> Tensor<4> {
        let alpha_t = self.schedule.alphas_cumprod[t];
        let alpha_prev =
            t.checked_sub(self.step_ratio).map_or(self.final_alpha_cumprod, |p| self.schedule.alphas_cumprod[p]);
        let (sa, sb) = (alpha_t.sqrt() as f32, (1.0 - alpha_t).sqrt() as f32);
        let (x0, eps) = match self.schedule.prediction_type {
            PredictionType::Epsilon => {
                let x0 = (sample - model_output.clone().mul_scalar(sb)).div_scalar(sa);
                (x0, model_output)
            }
            PredictionType::Sample => {
                let eps = (sample - model_output.clone().mul_scalar(sa)).div_scalar(sb);
                (model_output, eps)
            }
            PredictionType::VPrediction => {
                let x0 = sample.clone().mul_scalar(sa) - model_output.clone().mul_scalar(sb);
                let eps = model_output.mul_scalar(sa) + sample.mul_scalar(sb);
                (x0, eps)
            }
        };
        let x0 = match self.clip_sample {
            Some(range) => x0.clamp(-range, range),
            None => x0,
        };
        // Direction pointing to x_t (η = 0, so no added noise).
        x0.mul_scalar(alpha_prev.sqrt() as f32) + eps.mul_scalar((1.0 - alpha_prev).sqrt() as f32)
    }
}
