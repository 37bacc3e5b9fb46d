#!/usr/bin/env python3
"""Builds loc-data/tests/fixtures/magicbrush_test_zipcrypto.zip: a tiny MagicBrush test
release in the original layout, zipped with a password by Info-ZIP `zip -P` (ZipCrypto, as
the real release). Only the Python standard library and the `zip` command are needed.

Each image is 8x8 of one colour: red = 10 * session + turn (0 for the input), so tests can
tell which file they read.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

PASSWORD = "magicbrush-fixture"
OUT = os.path.join(os.path.dirname(__file__), "..", "loc-data", "tests", "fixtures", "magicbrush_test_zipcrypto.zip")


def png(red: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes([red, 100, 200]) * 8 for _ in range(8))
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def main() -> None:
    sessions = {"327726": ["add a boat", "make the sky pink"], "40315": ["remove the dog"]}
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "test")
        edit_sessions, local, global_ = {}, {}, {}
        for s, (img_id, instructions) in enumerate(sessions.items(), start=1):
            folder = os.path.join(root, "images", img_id)
            os.makedirs(folder)
            with open(os.path.join(folder, f"{img_id}-input.png"), "wb") as f:
                f.write(png(10 * s))
            turns, local[img_id], global_[img_id] = [], {}, {f"{img_id}-input.png": f"photo {img_id}"}
            for k, instruction in enumerate(instructions, start=1):
                for kind in ("output", "mask"):
                    with open(os.path.join(folder, f"{img_id}-{kind}{k}.png"), "wb") as f:
                        f.write(png(10 * s + k + (100 if kind == "mask" else 0)))
                source = f"{img_id}-input.png" if k == 1 else f"{img_id}-output{k - 1}.png"
                turns.append({"input": source, "mask": f"{img_id}-mask{k}.png", "output": f"{img_id}-output{k}.png", "instruction": instruction})
                local[img_id][f"{img_id}-output{k}.png"] = f"{instruction} (caption)"
            edit_sessions[img_id] = turns
        for name, value in [("edit_sessions.json", edit_sessions), ("local_descriptions.json", local), ("global_descriptions.json", global_)]:
            with open(os.path.join(root, name), "w") as f:
                json.dump(value, f, indent=1)
        out = os.path.abspath(OUT)
        if os.path.exists(out):
            os.remove(out)
        subprocess.run(["zip", "-q", "-r", "-X", "-P", PASSWORD, out, "test"], cwd=tmp, check=True)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
