//! The DDPM forward process used in training (diffusers `DDPMScheduler.add_noise` and
//! `get_velocity`), with one timestep per sample.
//!
//! Follows diffusers `src/diffusers/schedulers/scheduling_ddpm.py`: `DDPMScheduler.add_noise` and
//! `DDPMScheduler.get_velocity`.

use burn::prelude::*;

use super::{PredictionType, SchedulerConfig};

/// `ᾱ_t` for every training timestep and the prediction type.
#[derive(Clone, Debug)]
pub struct NoiseSchedule {
    pub alphas_cumprod: Vec<f64>,
    pub prediction_type: PredictionType,
}

impl NoiseSchedule {
    pub fn new(config: &SchedulerConfig) -> Self {
        Self { alphas_cumprod: config.alphas_cumprod(), prediction_type: config.prediction_type }
    }

    pub fn num_train_timesteps(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// `(sqrt(ᾱ_t), sqrt(1 - ᾱ_t))` per sample, shaped `[N, 1, 1, 1]`.
    fn coefficients(&self, timesteps: &[usize], device: &Device) -> (Tensor<4>, Tensor<4>) {
        let n = timesteps.len();
        let column = |f: &dyn Fn(f64) -> f64| {
            let values: Vec<f32> = timesteps.iter().map(|&t| f(self.alphas_cumprod[t]) as f32).collect();
            Tensor::<1>::from_data(TensorData::new(values, [n]), device).reshape([n, 1, 1, 1])
        };
        (column(&|a| a.sqrt()), column(&|a| (1.0 - a).sqrt()))
    }

    /// `x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε`, timestep `timesteps[n]` for sample `n`.
    pub fn add_noise(&self, x0: Tensor<4>, noise: Tensor<4>, timesteps: &[usize]) -> Tensor<4> {
        let (a, b) = self.coefficients(timesteps, &x0.device());
        x0 * a + noise * b
    }

    /// `v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x0`.
    pub fn velocity(&self, x0: Tensor<4>, noise: Tensor<4>, timesteps: &[usize]) -> Tensor<4> {
        let (a, b) = self.coefficients(timesteps, &x0.device());
        noise * a - x0 * b
    }

    /// What the model is trained to output for this prediction type.
    pub fn target(&self, x0: Tensor<4>, noise: Tensor<4>, timesteps: &[usize]) -> Tensor<4> {
        match self.prediction_type {
            PredictionType::Epsilon => noise,
            PredictionType::VPrediction => self.velocity(x0, noise, timesteps),
            PredictionType::Sample => x0,
        }
    }
}
