#!/usr/bin/env python3
"""Reference fixtures for the noise schedules: diffusers DDPMScheduler (add_noise,
get_velocity) and DDIMScheduler (set_timesteps with each spacing, one step per prediction
type). Writes loc-core/tests/fixtures/schedule/{cases.json, tensors.safetensors}.

    ~/venv-ref/bin/python scripts/make_schedule_fixtures.py
"""
import json
import os

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "loc-core", "tests", "fixtures", "schedule")

SD15 = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            clip_sample=False, set_alpha_to_one=False, steps_offset=1)

CASES = {
    "sd15_leading_eps": dict(config=dict(SD15, timestep_spacing="leading", prediction_type="epsilon"), steps=20),
    "sd15_trailing_v": dict(config=dict(SD15, timestep_spacing="trailing", prediction_type="v_prediction", set_alpha_to_one=True), steps=7),
    "linear_linspace_sample": dict(config=dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                                               timestep_spacing="linspace", prediction_type="sample", clip_sample=True, steps_offset=0), steps=13),
    "short_cosine_eps": dict(config=dict(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", timestep_spacing="leading",
                                         prediction_type="epsilon", clip_sample=False, steps_offset=0), steps=9),
}


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    tensors, cases = {}, {}
    for name, case in CASES.items():
        ddim = DDIMScheduler(**case["config"])
        ddim.set_timesteps(case["steps"])
        ddpm = DDPMScheduler(**{k: v for k, v in case["config"].items() if k not in ("set_alpha_to_one",)})
        x0, noise = torch.randn(3, 4, 5, 5, generator=g), torch.randn(3, 4, 5, 5, generator=g)
        train_t = torch.tensor([0, 37, ddpm.config.num_train_timesteps - 1])
        sample, output = torch.randn(2, 4, 5, 5, generator=g), torch.randn(2, 4, 5, 5, generator=g)
        step_index = len(ddim.timesteps) // 2
        t = int(ddim.timesteps[step_index])
        tensors.update({
            f"{name}.alphas_cumprod": ddpm.alphas_cumprod,
            f"{name}.timesteps": ddim.timesteps.to(torch.int64),
            f"{name}.x0": x0, f"{name}.noise": noise, f"{name}.train_t": train_t,
            f"{name}.noisy": ddpm.add_noise(x0, noise, train_t),
            f"{name}.velocity": ddpm.get_velocity(x0, noise, train_t),
            f"{name}.sample": sample, f"{name}.model_output": output,
            f"{name}.prev_sample": ddim.step(output, t, sample).prev_sample,
            f"{name}.last_prev_sample": ddim.step(output, int(ddim.timesteps[-1]), sample).prev_sample,
        })
        cases[name] = dict(config=case["config"], steps=case["steps"], step_timestep=t)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "tensors.safetensors"))
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)


if __name__ == "__main__":
    main()
