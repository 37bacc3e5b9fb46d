#!/usr/bin/env python3
"""Do our LoRA files load in diffusers, and do they mean what we mean? Loads the files written
by `cargo run --release -p loc-core --example lora_interop -- DIR` into the tiny diffusers
UNet fixture (kohya through diffusers' kohya converter, PEFT directly), runs the fixture's
inputs, and compares with the output our UNet produced with the same LoRA.

    ~/venv-ref/bin/pip install torch diffusers peft safetensors
    ~/venv-ref/bin/python scripts/check_lora_interop.py DIR
"""
import os
import sys

import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import load_file

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "loc-core", "tests", "fixtures", "unet_linear")


def unet_output(state_dict) -> torch.Tensor:
    unet = UNet2DConditionModel.from_pretrained(FIXTURE).eval()
    StableDiffusionPipeline.load_lora_into_unet(state_dict, network_alphas=state_dict.pop("__alphas__", None), unet=unet)
    io = load_file(os.path.join(FIXTURE, "io.safetensors"))
    with torch.no_grad():
        return unet(io["sample"], io["timestep"], io["encoder_hidden_states"]).sample


def main() -> None:
    folder = sys.argv[1]
    expected = load_file(os.path.join(folder, "expected.safetensors"))["sample"]
    kohya, alphas = StableDiffusionPipeline.lora_state_dict(os.path.join(folder, "kohya.safetensors"))
    kohya["__alphas__"] = alphas
    peft = load_file(os.path.join(folder, "peft.safetensors"))
    failed = False
    for name, state in [("kohya", kohya), ("peft", peft)]:
        got = unet_output(state)
        diff = (got - expected).abs().max().item() / max(1.0, expected.abs().max().item())
        print(f"{name}: max relative difference {diff:.2e}")
        failed |= diff > 1e-4
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
