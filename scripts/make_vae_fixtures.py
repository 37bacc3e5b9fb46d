#!/usr/bin/env python3
"""Reference fixtures for the VAE port: a tiny random diffusers AutoencoderKL saved in the
Hugging Face layout, with a copy using the old attention key names (`query`, `key`, `value`,
`proj_attn`, as in older checkpoints), and io.safetensors with encoder mean/logvar and
decoder output.

    ~/venv-ref/bin/python scripts/make_vae_fixtures.py
"""
import os

import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file, save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "loc-core", "tests", "fixtures")
CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=4, sample_size=16,
    block_out_channels=(8, 16, 16),
    down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
)
OLD_NAMES = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def main() -> None:
    g = torch.Generator().manual_seed(1)
    vae = AutoencoderKL(**CONFIG).eval()
    with torch.no_grad():
        for name, p in vae.named_parameters():
            scale = 0.1 if ("norm" in name and name.endswith("weight")) else 0.2
            p.copy_((1.0 if scale == 0.1 else 0.0) + scale * torch.randn(p.shape, generator=g))
    folder = os.path.join(OUT, "vae")
    vae.save_pretrained(folder, safe_serialization=True)

    weights = load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors"))
    old = {}
    for key, value in weights.items():
        for new, legacy in OLD_NAMES.items():
            key = key.replace(f".attentions.0.{new}.", f".attentions.0.{legacy}.")
        old[key] = value
    old_folder = os.path.join(OUT, "vae_old_keys")
    os.makedirs(old_folder, exist_ok=True)
    save_file(old, os.path.join(old_folder, "diffusion_pytorch_model.safetensors"))
    with open(os.path.join(folder, "config.json")) as src, open(os.path.join(old_folder, "config.json"), "w") as dst:
        dst.write(src.read())

    image = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    latents = torch.randn(2, 4, 4, 4, generator=g)
    with torch.no_grad():
        dist = vae.encode(image).latent_dist
        decoded = vae.decode(latents).sample
    save_file({"sample": image, "mean": dist.mean.contiguous(), "logvar": dist.logvar.contiguous(),
               "latents": latents, "decoded": decoded.contiguous()}, os.path.join(folder, "io.safetensors"))
    print("vae", sum(p.numel() for p in vae.parameters()), "parameters; scaling_factor", vae.config.scaling_factor)


if __name__ == "__main__":
    main()
