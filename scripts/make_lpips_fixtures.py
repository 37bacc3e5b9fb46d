#!/usr/bin/env python3
"""loc-eval/tests/fixtures/lpips: the `lpips` package (v0.1) on backbones of its AlexNet and
VGG16 architectures with hash-generated weights (full-size backbones would be tens of MB; the
Rust test rebuilds the same weights from the same integer hash, writes them through
`scripts/convert_lpips_weights.py`'s layout and loads them as real weights load) and the
package's real head weights (`lins_alex.safetensors`, `lins_vgg.safetensors`).
`io_<net>.safetensors`: two 48x48 image batches in [-1, 1], the first 8 channels of the five
feature taps (before normalisation) of the first image, and the distances.

    /work/venv-ref/bin/python scripts/make_lpips_fixtures.py   (torch, torchvision, lpips, safetensors)
"""
import math
import os

import lpips
import torch
from safetensors.torch import save_file

from convert_lpips_weights import convert

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "loc-eval", "tests", "fixtures", "lpips")


def hashed(shape, seed, bound):
    """Uniform-like values in [-bound, bound): an integer hash of the flat index, exact in f32
    (the Rust test computes the same)."""
    n = 1
    for s in shape:
        n *= s
    i = torch.arange(n, dtype=torch.int64)
    h = (i * 2654435761 + seed * 40503) % (1 << 32)
    return ((h.double() / (1 << 32) - 0.5) * 2 * bound).float().reshape(shape)


def hashed_backbone(model):
    """Every backbone convolution: He-uniform-scaled weights, small biases, seed = its order."""
    with torch.no_grad():
        convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
        for k, conv in enumerate(convs):
            fan_in = conv.weight[0].numel()
            conv.weight.copy_(hashed(conv.weight.shape, 2 * k + 1, math.sqrt(6.0 / fan_in)))
            conv.bias.copy_(hashed(conv.bias.shape, 2 * k + 2, 0.05))


def main():
    os.makedirs(OUT, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    in0 = torch.rand(3, 3, 48, 48, generator=generator) * 2 - 1
    in1 = (in0 + 0.3 * torch.randn(3, 3, 48, 48, generator=generator)).clamp(-1, 1)
    for net in ("alex", "vgg"):
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
        hashed_backbone(model)
        tensors = convert(model.state_dict(), model.state_dict(), net)
        save_file({k: v for k, v in tensors.items() if k.startswith("lins.")}, os.path.join(OUT, f"lins_{net}.safetensors"))
        with torch.no_grad():
            taps = model.net.forward(model.scaling_layer(in0))
            distance = model(in0, in1).flatten()
        io = {"in0": in0, "in1": in1, "distance": distance}
        io.update({f"tap{k}": t[0, :8].contiguous() for k, t in enumerate(taps)})
        save_file(io, os.path.join(OUT, f"io_{net}.safetensors"))
        print(net, distance.tolist())


if __name__ == "__main__":
    main()
