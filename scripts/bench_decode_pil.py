#!/usr/bin/env python3
"""PIL baseline for `cargo bench -p loc-data --bench decode`: the same pairs, decoded,
converted to RGB, resized (shorter side to 256, bilinear) and centre-cropped, in one
Python loop. Usage: python3 scripts/bench_decode_pil.py DIR (needs `pip install pillow`)."""
import json
import os
import sys
import time

from PIL import Image

SIDE = 256


def prepare(path: str) -> Image.Image:
    image = Image.open(path).convert("RGB")
    w, h = image.size
    scale = SIDE / min(w, h)
    rw, rh = max(SIDE, round(w * scale)), max(SIDE, round(h * scale))
    image = image.resize((rw, rh), Image.BILINEAR)
    x, y = round((rw - SIDE) / 2), round((rh - SIDE) / 2)
    return image.crop((x, y, x + SIDE, y + SIDE))


def main() -> None:
    folder = sys.argv[1]
    with open(os.path.join(folder, "pairs.jsonl")) as f:
        pairs = [json.loads(line) for line in f if line.strip()]
    for p in pairs[:4]:
        prepare(os.path.join(folder, p["before"]))
    rounds, start = 2, time.perf_counter()
    for _ in range(rounds):
        for p in pairs:
            prepare(os.path.join(folder, p["before"]))
            prepare(os.path.join(folder, p["after"]))
    rate = rounds * len(pairs) / (time.perf_counter() - start)
    print(f"| PIL, 1 thread | {rate:.1f} | {2 * rate:.1f} |")


if __name__ == "__main__":
    main()
