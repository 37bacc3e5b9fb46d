#!/usr/bin/env python3
"""Reference fixtures for the UNet port: tiny random diffusers UNet2DConditionModels saved in
the Hugging Face layout (config.json + diffusion_pytorch_model.safetensors), with inputs and
reference outputs in io.safetensors. Rust tests in loc-core load them through the same loader
real weights use.

    python3 -m venv ~/venv-ref && ~/venv-ref/bin/pip install torch diffusers safetensors
    ~/venv-ref/bin/python scripts/make_unet_fixtures.py

Two configurations cover every branch: 1x1-conv projections with one int head count, and
linear projections with a per-level list, two layers per block, a DownBlock2D/UpBlock2D
level in the middle, in_channels 8 (InstructPix2Pix). The second is also saved in f16.
"""
import os

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "loc-core", "tests", "fixtures")

CONFIGS = {
    "unet_conv": dict(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=12,
        attention_head_dim=2, norm_num_groups=4, use_linear_projection=False,
    ),
    "unet_linear": dict(
        sample_size=8, in_channels=8, out_channels=4, layers_per_block=2,
        block_out_channels=(8, 16, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=12,
        attention_head_dim=[2, 4, 4], norm_num_groups=4, use_linear_projection=True,
    ),
}


def randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Random weights everywhere (diffusers zero-initialises some outputs, which would hide bugs)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=generator))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=generator))


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    for name, config in CONFIGS.items():
        unet = UNet2DConditionModel(**config).eval()
        randomize(unet, generator)
        folder = os.path.join(OUT, name)
        unet.save_pretrained(folder, safe_serialization=True)
        inputs = {
            "sample": torch.randn(2, config["in_channels"], 8, 8, generator=generator),
            "timestep": torch.tensor([3, 901], dtype=torch.int64),
            "encoder_hidden_states": torch.randn(2, 5, config["cross_attention_dim"], generator=generator),
        }
        with torch.no_grad():
            out = unet(inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"]).sample
        io = {**inputs, "out_sample": out}
        if name == "unet_linear":
            half = UNet2DConditionModel(**config).eval()
            half.load_state_dict(unet.state_dict())
            half = half.half()
            half.save_pretrained(os.path.join(OUT, name + "_f16"), safe_serialization=True)
            with torch.no_grad():
                io["out_sample_f16_weights"] = half.float()(inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"]).sample
        save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(folder, "io.safetensors"))
        print(name, sum(p.numel() for p in unet.parameters()), "parameters")


if __name__ == "__main__":
    main()
