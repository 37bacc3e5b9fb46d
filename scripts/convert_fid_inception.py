#!/usr/bin/env python3
"""FID weights for `loc-eval --inception DIR` / `[eval] inception = DIR`: pytorch-fid's
`pt_inception-2015-12-05-6726825d.pth` (what `pytorch_fid` downloads into
`~/.cache/torch/hub/checkpoints/`) into `DIR/model.safetensors`, keys unchanged (the batch
norms' `num_batches_tracked` counters left out).

    python scripts/convert_fid_inception.py --weights pt_inception-2015-12-05-6726825d.pth --out weights/fid-inception
    (torch, safetensors)
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file


def convert(state_dict):
    return {k: v.float().contiguous() for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}


def write(folder, tensors):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model": "pytorch-fid-inception-v3"}, f)
    save_file(tensors, os.path.join(folder, "model.safetensors"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    write(args.out, convert(torch.load(args.weights, map_location="cpu")))


if __name__ == "__main__":
    main()
