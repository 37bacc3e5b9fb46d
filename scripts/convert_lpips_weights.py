#!/usr/bin/env python3
"""LPIPS weights for `loc-eval --lpips DIR` / `[eval] lpips = DIR`: the torchvision backbone
file users have (e.g. `~/.cache/torch/hub/checkpoints/alexnet-owt-7be5be79.pth` or
`vgg16-397923af.pth`) and the `lpips` package's head file (`lpips/weights/v0.1/alex.pth`,
`vgg.pth`) into one folder: `config.json` ({"net": "alex" | "vgg"}) and `model.safetensors`
(`convs.K.weight/bias`, the backbone's convolutions in order, and `lins.K.weight`, the heads).

    python scripts/convert_lpips_weights.py --net alex --backbone alexnet-owt-7be5be79.pth \\
        --heads .../site-packages/lpips/weights/v0.1/alex.pth --out weights/lpips-alex
    (torch, safetensors)
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file

# torchvision `features` indices of the convolutions LPIPS reads (up to relu5 / relu5_3).
CONVS = {"alex": [0, 3, 6, 8, 10], "vgg": [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]}


def convert(backbone, heads, net):
    """`backbone`: a torchvision state dict (`features.N.*`) or the lpips package's own
    (`net.sliceK.N.*`); `heads`: the lpips head file's state dict (`linK.model.1.weight`)."""
    features = {}
    for key, value in backbone.items():
        parts = key.split(".")
        if parts[0] == "features":
            features[(int(parts[1]), parts[2])] = value
        elif parts[0] == "net" and parts[1].startswith("slice"):
            features[(int(parts[2]), parts[3])] = value
    tensors = {}
    for k, index in enumerate(CONVS[net]):
        for kind in ("weight", "bias"):
            tensors[f"convs.{k}.{kind}"] = features[(index, kind)].float().contiguous()
    for k in range(5):
        tensors[f"lins.{k}.weight"] = heads[f"lin{k}.model.1.weight"].float().contiguous()
    return tensors


def write(folder, net, tensors):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"net": net}, f)
    save_file(tensors, os.path.join(folder, "model.safetensors"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--net", choices=["alex", "vgg"], required=True)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--heads", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    backbone = torch.load(args.backbone, map_location="cpu")
    heads = torch.load(args.heads, map_location="cpu")
    write(args.out, args.net, convert(backbone, heads, args.net))


if __name__ == "__main__":
    main()
