#!/usr/bin/env python3
"""Reference fixtures for CLIP: a tiny random transformers CLIPTextModel (quick-GELU and
GELU variants) and CLIPVisionModelWithProjection saved in the Hugging Face layout with io, and a
toy BPE vocabulary (vocab.json + merges.txt) with the ids transformers' CLIPTokenizer gives
for tricky strings.

    ~/venv-ref/bin/python scripts/make_clip_fixtures.py
"""
import json
import os

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

OUT = os.path.join(os.path.dirname(__file__), "..", "loc-core", "tests", "fixtures")

# A toy vocabulary in CLIP's format: the 256 byte symbols (with and without </w>), some merges.
WORDS = ["a", "photo", "of", "cat", "cats", "dog", "the", "make", "it", "snow", "y", "red", "hat", "night", "low",
         "lower", "newest", "wider", "don", "'t", "ok", "1", "2", "3", "!", "..."]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def toy_tokenizer(folder: str) -> CLIPTokenizer:
    symbols = bytes_to_unicode()
    vocab = symbols + [s + "</w>" for s in symbols]
    merges = []
    for word in WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            merged = pair[0] + pair[1]
            if " ".join(pair) not in merges:
                merges.append(" ".join(pair))
                vocab.append(merged)
            pieces = [merged] + pieces[2:]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump({token: i for i, token in enumerate(dict.fromkeys(vocab))}, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"), pad_token="<|endoftext|>")


TRICKY = [
    "a photo of a cat",
    "  A   PHOTO\tof\n the   Cats!!! ",
    "don't make it snowy... ok?",
    "the red hat 123 at night",
    "lowernewest wider",
    "émigré café ünïcödé 日本語",
    "",
    "cat " * 60,
]


def main() -> None:
    folder = os.path.join(OUT, "clip_tokenizer")
    tokenizer = toy_tokenizer(folder)
    ids = tokenizer(TRICKY, padding="max_length", max_length=16, truncation=True).input_ids
    with open(os.path.join(folder, "cases.json"), "w") as f:
        json.dump({"max_length": 16, "cases": [{"text": t, "ids": i} for t, i in zip(TRICKY, ids)]}, f, indent=1, ensure_ascii=False)

    g = torch.Generator().manual_seed(2)
    for name, act in [("clip_text", "quick_gelu"), ("clip_text_gelu", "gelu")]:
        config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=12, intermediate_size=36, num_hidden_layers=2,
                                num_attention_heads=4, max_position_embeddings=16, hidden_act=act,
                                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        model = CLIPTextModel(config).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
        model.save_pretrained(os.path.join(OUT, name), safe_serialization=True)
        input_ids = torch.tensor(ids[:4], dtype=torch.int64)
        with torch.no_grad():
            out = model(input_ids)
        save_file({"input_ids": input_ids, "last_hidden_state": out.last_hidden_state.contiguous(),
                   "pooler_output": out.pooler_output.contiguous()}, os.path.join(OUT, name, "io.safetensors"))


def vision_fixture() -> None:
    """A tiny CLIPVisionModelWithProjection with io (pixel_values -> image_embeds)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    g = torch.Generator().manual_seed(4)
    config = CLIPVisionConfig(hidden_size=12, intermediate_size=36, num_hidden_layers=2, num_attention_heads=4,
                              image_size=16, patch_size=4, projection_dim=8, hidden_act="quick_gelu")
    model = CLIPVisionModelWithProjection(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    folder = os.path.join(OUT, "clip_vision")
    model.save_pretrained(folder, safe_serialization=True)
    pixel_values = torch.randn(2, 3, 16, 16, generator=g)
    with torch.no_grad():
        out = model(pixel_values=pixel_values)
    save_file({"pixel_values": pixel_values, "image_embeds": out.image_embeds.contiguous(),
               "last_hidden_state": out.last_hidden_state.contiguous()}, os.path.join(folder, "io.safetensors"))


if __name__ == "__main__":
    main()
    vision_fixture()
