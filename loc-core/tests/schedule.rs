//! DDPM and DDIM against diffusers (fixtures from `scripts/make_schedule_fixtures.py`).

mod common;

use common::*;
use loc_core::schedule::{Ddim, NoiseSchedule, SchedulerConfig};

fn cases() -> Vec<(String, SchedulerConfig, usize, usize)> {
    let text = std::fs::read_to_string(fixture("schedule/cases.json")).unwrap();
    let cases: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    cases
        .into_iter()
        .map(|(name, case)| {
            let config: SchedulerConfig = serde_json::from_value(case["config"].clone()).unwrap();
            (name, config, case["steps"].as_u64().unwrap() as usize, case["step_timestep"].as_u64().unwrap() as usize)
        })
        .collect()
}

#[test]
fn training_schedule_matches_ddpm_scheduler() {
    let device = device();
    let reference = read_reference(&fixture("schedule/tensors.safetensors"));
    for (name, config, _, _) in cases() {
        let get = |key: &str| &reference[&format!("{name}.{key}")];
        let schedule = NoiseSchedule::new(&config);
        let expected = &get("alphas_cumprod").1;
        for (t, (mine, theirs)) in schedule.alphas_cumprod.iter().zip(expected).enumerate() {
            assert!((*mine as f32 - theirs).abs() <= 2e-6 * theirs.max(1e-3), "{name} ᾱ_{t}: {mine} vs {theirs}");
        }
        let timesteps: Vec<usize> = get("train_t").1.iter().map(|&t| t as usize).collect();
        let (x0, noise) = (tensor::<4>(get("x0"), &device), tensor::<4>(get("noise"), &device));
        assert_close(schedule.add_noise(x0.clone(), noise.clone(), &timesteps), tensor(get("noisy"), &device), 1e-5);
        assert_close(schedule.velocity(x0, noise, &timesteps), tensor(get("velocity"), &device), 1e-5);
    }
}

#[test]
fn ddim_timesteps_and_steps_match_ddim_scheduler() {
    let device = device();
    let reference = read_reference(&fixture("schedule/tensors.safetensors"));
    for (name, config, steps, step_t) in cases() {
        let get = |key: &str| &reference[&format!("{name}.{key}")];
        let ddim = Ddim::new(&config, steps);
        let expected: Vec<usize> = get("timesteps").1.iter().map(|&t| t as usize).collect();
        assert_eq!(ddim.timesteps, expected, "{name}");
        let (sample, output) = (tensor::<4>(get("sample"), &device), tensor::<4>(get("model_output"), &device));
        assert_close(ddim.step(output.clone(), step_t, sample.clone()), tensor(get("prev_sample"), &device), 1e-5);
        let last = *ddim.timesteps.last().unwrap();
        assert_close(ddim.step(output, last, sample), tensor(get("last_prev_sample"), &device), 1e-5);
    }
}

#[test]
fn targets_follow_the_prediction_type() {
    let device = device();
    let mut config = SchedulerConfig::sd15();
    let (x0, noise) = (randn([2, 4, 3, 3], &device), randn([2, 4, 3, 3], &device));
    let t = [10, 900];
    assert_eq!(values(NoiseSchedule::new(&config).target(x0.clone(), noise.clone(), &t)), values(noise.clone()));
    config.prediction_type = loc_core::schedule::PredictionType::Sample;
    assert_eq!(values(NoiseSchedule::new(&config).target(x0.clone(), noise.clone(), &t)), values(x0.clone()));
    config.prediction_type = loc_core::schedule::PredictionType::VPrediction;
    let schedule = NoiseSchedule::new(&config);
    assert_eq!(values(schedule.target(x0.clone(), noise.clone(), &t)), values(schedule.velocity(x0, noise, &t)));
}
