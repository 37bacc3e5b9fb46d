#!/usr/bin/env python3
"""loc-data/tests/fixtures/resize: PNGs and Pillow's bicubic (and bilinear) resizes of them: shrinking,
enlarging, one axis only, and the mixed cases where Pillow 13 chooses its pass order (the
vertical pass first when the height shrinks by more than twice what the width does, or the
width grows while the height shrinks; the horizontal pass first otherwise).

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install 'pillow==13.0.0' numpy
    /tmp/venv/bin/python scripts/make_resize_fixtures.py
"""
import json
import os
import shutil

import numpy as np
import PIL
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# (source size, target size); the first four are the original cases, unchanged.
CASES = [
    ((64, 48), (23, 17)),  # both shrink, the width more: horizontal first
    ((13, 9), (40, 31)),  # both grow
    ((50, 20), (21, 45)),  # width shrinks, height grows: horizontal first
    ((31, 31), (31, 12)),  # height only
    ((64, 64), (72, 56)),  # width grows, height shrinks: vertical first
    ((48, 64), (40, 80)),  # width shrinks, height grows: horizontal first
    ((64, 64), (60, 20)),  # height shrinks more than twice the width: vertical first
    ((50, 50), (45, 40)),  # height shrinks exactly twice the width: horizontal first
    ((40, 90), (12, 70)),  # both shrink, the width more than half the height's: horizontal first
    ((30, 40), (45, 40)),  # width only
]


def picture(rng, w, h):
    """Smooth colour fields plus noise: something bicubic filters treat like a photograph."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    phase = rng.uniform(0, 6, size=3)
    freq = rng.uniform(0.05, 0.4, size=3)
    tint = rng.uniform(40, 215, size=3)
    base = np.stack([tint[c] + 60 * np.sin(freq[c] * x + phase[c]) * np.cos(freq[(c + 1) % 3] * y) for c in range(3)], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 25, size=base.shape), 0, 255).astype(np.uint8))


def resize_fixture():
    assert PIL.__version__.split(".")[0] == "13", f"the fixtures are Pillow 13's; found {PIL.__version__}"
    folder = os.path.join(ROOT, "loc-data", "tests", "fixtures", "resize")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    rng = np.random.default_rng(5)
    cases = []
    for i, (src, dst) in enumerate(CASES):
        image = picture(rng, *src)
        image.save(os.path.join(folder, f"in{i}.png"))
        image.resize(dst).save(os.path.join(folder, f"out{i}.png"))  # PIL's default: bicubic
        image.resize(dst, Image.BILINEAR).save(os.path.join(folder, f"bilinear{i}.png"))
        cases.append({"input": f"in{i}.png", "output": f"out{i}.png", "bilinear": f"bilinear{i}.png", "size": list(dst)})
    with open(os.path.join(folder, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)


if __name__ == "__main__":
    resize_fixture()
