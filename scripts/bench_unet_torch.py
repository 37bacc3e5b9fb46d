#!/usr/bin/env python3
"""The PyTorch side of `cargo bench -p loc-core --bench unet [-- --sd15]`: diffusers'
UNet2DConditionModel with the same configurations (random weights, frozen), a per-sample
rank-4 LoRA (normal, std 0.1, gradients on) on every attention projection through forward
hooks, timestep 500, a 77-token context. Forward (inference, no graph), then forward +
backward of the mean square of the output, each the median of the repeats (9 tiny, 5 at SD-1.5)
after one untimed call of each, as the Rust bench.

    /work/venv-ref/bin/python scripts/bench_unet_torch.py [--sd15]   (torch, diffusers)
"""
import argparse
import time

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from bench_hypernet_step_torch import SD15, SUFFIXES, install_hooks

# `UNet2DConditionConfig::tiny()`.
TINY = dict(in_channels=8, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=4, cross_attention_dim=32, norm_num_groups=8, sample_size=16)


def bench(name, config, batch, side, repeats):
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**config).requires_grad_(False)
    targets = [(n, m) for n, m in unet.named_modules() if isinstance(m, nn.Linear) and n.endswith(SUFFIXES)]
    state = {}
    install_hooks(unet, state)
    sample = torch.randn(batch, config["in_channels"], side, side)
    timesteps = torch.full((batch,), 500.0)
    context = torch.randn(batch, 77, config["cross_attention_dim"]) * 0.1

    def once(backward):
        state["lora"] = {n: ((torch.randn(batch, 4, m.in_features) * 0.1).requires_grad_(),
                             (torch.randn(batch, m.out_features, 4) * 0.1).requires_grad_()) for n, m in targets}
        start = time.perf_counter()
        if backward:
            unet(sample, timesteps, context).sample.pow(2).mean().backward()
        else:
            with torch.no_grad():
                unet(sample, timesteps, context)
        return time.perf_counter() - start

    # Both modes once untimed, then the median of `repeats`, as the Rust bench.
    once(False)
    once(True)
    forward, both = (sorted(once(b) for _ in range(repeats))[repeats // 2] for b in (False, True))
    params = sum(p.numel() for p in unet.parameters()) / 1e6
    print(f"| {name} | {params:.1f}M | {batch}x{config['in_channels']}x{side}x{side} | {len(targets)} | "
          f"{forward:.3f} | {both:.3f} | PyTorch {torch.__version__}, {torch.get_num_threads()} threads |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sd15", action="store_true")
    args = parser.parse_args()
    print("| config | params | input | LoRA targets | forward s | forward+backward s | torch |")
    print("|---|---|---|---|---|---|---|")
    bench("tiny", TINY, 8, 16, 9)
    if args.sd15:
        bench("SD-1.5 InstructPix2Pix", SD15, 1, 32, 5)


if __name__ == "__main__":
    main()
