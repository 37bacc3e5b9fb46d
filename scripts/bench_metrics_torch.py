#!/usr/bin/env python3
"""The PyTorch side of `cargo bench -p loc-eval --bench metrics`: the same random-weight
CLIP ViT-B/32 towers and DINO ViT-S/16 (transformers), batch 16, best of 3 after a warm-up,
on the CPU threads torch picks.

    /work/venv-ref/bin/python scripts/bench_metrics_torch.py
"""
import time

import torch
from transformers import (CLIPTextConfig, CLIPTextModelWithProjection, CLIPVisionConfig,
                          CLIPVisionModelWithProjection, ViTConfig, ViTModel)


def best(f, repeats=3):
    f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    batch = 16
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                                            num_attention_heads=12, image_size=224, patch_size=32,
                                                            projection_dim=512)).eval()
    text = CLIPTextModelWithProjection(CLIPTextConfig(vocab_size=49408, hidden_size=512, intermediate_size=2048,
                                                      num_hidden_layers=12, num_attention_heads=8,
                                                      max_position_embeddings=77, projection_dim=512)).eval()
    dino = ViTModel(ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                              layer_norm_eps=1e-6), add_pooling_layer=False).eval()
    pixels = torch.randn(batch, 3, 224, 224)
    ids = torch.randint(0, 49407, (batch, 77))
    with torch.no_grad():
        rows = [("CLIP ViT-B/32 images (forward only)", best(lambda: vision(pixel_values=pixels))),
                ("CLIP text (forward only)", best(lambda: text(input_ids=ids))),
                ("DINO ViT-S/16 images (forward only)", best(lambda: dino(pixel_values=pixels)))]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch}")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} | {batch / seconds:.1f} |")


if __name__ == "__main__":
    main()
