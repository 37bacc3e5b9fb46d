#!/usr/bin/env python3
"""loc-eval/tests/fixtures/fid (and loc-core's Inception test):

- `weights.json`: every tensor `scripts/convert_fid_inception.py` writes for pytorch-fid's
  Inception-v3, `[key, shape]` in order. Their values are hash-generated (the 95 MB of real-size
  weights are not committed; the Rust test rebuilds the same values from the same integer hash,
  writes them as the converter does and loads them as real weights load): the i-th tensor's
  `hashed(shape, i + 1, bound)`, with He-uniform bounds `sqrt(6 / fan_in)` for
  convolutions and the classifier, `1 + hashed(.., 0.1)` for batch-norm scales and
  variances, `hashed(.., 0.01)` for shifts, means and the classifier's bias.
- `io.safetensors`: the pool3 features, from pytorch-fid's own `InceptionV3` with those
  weights, of two hash-generated 299x299 images in [0, 1] (`hashed(.., 7, 0.5) + 0.5`, rebuilt
  by the test; at 299 the resize is the identity); and two 48x64 images with every 13th row and
  column of their bilinear resize to 299 (`F.interpolate`, as `InceptionV3.forward` does).
- `frechet.safetensors`: two sets of 32-d activations and pytorch-fid's
  `calculate_frechet_distance` of their statistics (`np.mean`, `np.cov(rowvar=False)`,
  scipy's `sqrtm`), in float64.

    /work/venv-ref/bin/python scripts/make_fid_fixtures.py   (torch, torchvision, pytorch-fid, scipy, safetensors)
"""
import json
import math
import os

import numpy as np
import pytorch_fid.inception as fid_inception
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file

from convert_fid_inception import convert
from make_lpips_fixtures import hashed

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "loc-eval", "tests", "fixtures", "fid")


def template():
    """pytorch-fid's FID Inception structure, as `fid_inception_v3` builds it, weights unset."""
    inception = fid_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    inception.Mixed_5b = fid_inception.FIDInceptionA(192, pool_features=32)
    inception.Mixed_5c = fid_inception.FIDInceptionA(256, pool_features=64)
    inception.Mixed_5d = fid_inception.FIDInceptionA(288, pool_features=64)
    inception.Mixed_6b = fid_inception.FIDInceptionC(768, channels_7x7=128)
    inception.Mixed_6c = fid_inception.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6d = fid_inception.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6e = fid_inception.FIDInceptionC(768, channels_7x7=192)
    inception.Mixed_7b = fid_inception.FIDInceptionE_1(1280)
    inception.Mixed_7c = fid_inception.FIDInceptionE_2(2048)
    return inception


def hashed_weights(state_dict):
    out = {}
    keys = [k for k in state_dict if not k.endswith("num_batches_tracked")]
    for i, key in enumerate(keys):
        shape = tuple(state_dict[key].shape)
        if key.endswith("bn.weight") or key.endswith("running_var"):
            value = 1.0 + hashed(shape, i + 1, 0.1)
        elif key.endswith("bn.bias") or key.endswith("running_mean") or key == "fc.bias":
            value = hashed(shape, i + 1, 0.01)
        else:
            fan_in = 1
            for s in shape[1:]:
                fan_in *= s
            value = hashed(shape, i + 1, math.sqrt(6.0 / fan_in))
        out[key] = value
    return keys, out


def main():
    os.makedirs(OUT, exist_ok=True)
    keys, weights = hashed_weights(template().state_dict())
    with open(os.path.join(OUT, "weights.json"), "w") as f:
        json.dump([[k, list(weights[k].shape)] for k in keys], f)
    full = dict(weights)
    full.update({k: torch.zeros((), dtype=torch.long) for k in template().state_dict() if k.endswith("num_batches_tracked")})
    # pytorch-fid's own model, its download replaced by the hashed weights.
    fid_inception.load_state_dict_from_url = lambda *args, **kwargs: full
    model = fid_inception.InceptionV3([3]).eval()
    images = hashed((2, 3, 299, 299), 7, 0.5) + 0.5
    with torch.no_grad():
        features = model(images)[0].flatten(1)
    small = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    resized = torch.nn.functional.interpolate(small, size=(299, 299), mode="bilinear", align_corners=False)
    io = {"features": features, "small": small, "resized_every_13": resized[:, :, ::13, ::13].contiguous()}
    save_file(io, os.path.join(OUT, "io.safetensors"))
    assert convert(full).keys() == weights.keys()

    rng = np.random.default_rng(1)
    acts1 = rng.normal(size=(200, 32))
    acts2 = 0.8 * rng.normal(size=(200, 32)) @ rng.normal(size=(32, 32)) * 0.3 + 0.5
    mu1, sigma1 = np.mean(acts1, axis=0), np.cov(acts1, rowvar=False)
    mu2, sigma2 = np.mean(acts2, axis=0), np.cov(acts2, rowvar=False)
    distance = calculate_frechet_distance(mu1, sigma1, mu2, sigma2)
    save_numpy({"acts1": acts1, "acts2": acts2, "distance": np.array([distance])}, os.path.join(OUT, "frechet.safetensors"))
    print("features", features[:, :4].tolist(), "fid", distance)


if __name__ == "__main__":
    main()
