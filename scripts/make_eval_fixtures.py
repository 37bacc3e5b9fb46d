#!/usr/bin/env python3
"""Reference fixtures for the evaluation (issue 5), all tiny and generated here:

- loc-core/tests/fixtures/clip_full: a tiny random transformers CLIPModel (both towers, both
  projections, old-style eos_token_id 2) with its toy tokenizer; io = text and image embeds.
- loc-core/tests/fixtures/vit_dino: a tiny random ViTModel (with the pooler DINO checkpoints
  carry); io = last_hidden_state and the class token.
- loc-eval/tests/fixtures/magicbrush: ground truth and generated folders in the official
  layout, local descriptions, and reference.json: the numbers of MagicBrush's
  evaluation/image_eval.py formulas (PIL + torchvision + nn.L1Loss/MSELoss + scipy cosine),
  with the tiny CLIP standing in for clip.load("ViT-B/32") and the tiny ViT for DINO, plus
  PSNR and SSIM (scikit-image, Wang et al. settings).

    /work/venv-ref/bin/python scripts/make_eval_fixtures.py
    (torch, transformers, torchvision, pillow, scipy, scikit-image)
"""
import json
import os
import shutil

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from scipy import spatial
from skimage.metrics import structural_similarity
from torch import nn
from torchvision import transforms
from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTModel

from make_clip_fixtures import toy_tokenizer
from make_resize_fixtures import picture

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CORE = os.path.join(ROOT, "loc-core", "tests", "fixtures")
EVAL = os.path.join(ROOT, "loc-eval", "tests", "fixtures")
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CONTEXT = 16


def randomize(model, seed):
    """Random weights where the pixels matter: strong patch embeddings, weak constant tokens
    (with plain 0.3 noise everywhere, every image gets nearly the same embedding)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.3
            if "patch_embedding" in name:
                scale = 2.0
            elif "position_embedding" in name or "class_embedding" in name or "cls_token" in name:
                scale = 0.03
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return model.eval()


def clip_fixture():
    folder = os.path.join(CORE, "clip_full")
    shutil.rmtree(folder, ignore_errors=True)
    tokenizer = toy_tokenizer(folder)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"model_max_length": CONTEXT, "pad_token": "<|endoftext|>"}, f)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=12, intermediate_size=24, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=CONTEXT, hidden_act="quick_gelu",
                         eos_token_id=2, bos_token_id=0, pad_token_id=1),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8, hidden_act="quick_gelu"),
        projection_dim=8)
    model = randomize(CLIPModel(config), 11)
    model.save_pretrained(folder, safe_serialization=True)
    captions = ["a photo of a cat", "the red hat at night!", "don't make it snowy"]
    input_ids = torch.tensor(tokenizer(captions, padding="max_length", max_length=CONTEXT, truncation=True).input_ids)
    pixel_values = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        text_embeds = model.get_text_features(input_ids=input_ids)
        image_embeds = model.get_image_features(pixel_values=pixel_values)
    text_embeds = getattr(text_embeds, "pooler_output", text_embeds)
    image_embeds = getattr(image_embeds, "pooler_output", image_embeds)
    save_file({"input_ids": input_ids, "text_embeds": text_embeds.contiguous(), "pixel_values": pixel_values,
               "image_embeds": image_embeds.contiguous()}, os.path.join(folder, "io.safetensors"))
    return model, tokenizer


def dino_fixture():
    folder = os.path.join(CORE, "vit_dino")
    shutil.rmtree(folder, ignore_errors=True)
    config = ViTConfig(hidden_size=12, num_hidden_layers=2, num_attention_heads=3, intermediate_size=24,
                       image_size=32, patch_size=8, layer_norm_eps=1e-6, hidden_act="gelu")
    model = randomize(ViTModel(config, add_pooling_layer=True), 13)
    model.save_pretrained(folder, safe_serialization=True)
    pixel_values = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(14))
    with torch.no_grad():
        hidden = model(pixel_values=pixel_values).last_hidden_state
    save_file({"pixel_values": pixel_values, "last_hidden_state": hidden.contiguous(),
               "cls": hidden[:, 0].contiguous()}, os.path.join(folder, "io.safetensors"))
    return model


# ---- MagicBrush: the official formulas (evaluation/image_eval.py), on the tiny models ----

def eval_distance(pairs, criterion):
    score = 0
    for gen_path, gt_path in pairs:
        gen, gt = Image.open(gen_path).convert("RGB"), Image.open(gt_path).convert("RGB")
        gen = gen.resize(gt.size)
        score += criterion(transforms.ToTensor()(gen), transforms.ToTensor()(gt)).item()
    return score / len(pairs)


def to_unit(path, size=None):
    image = Image.open(path).convert("RGB")
    if size is not None:
        image = image.resize(size)
    return np.asarray(image).astype(np.float64) / 255.0


def eval_psnr_ssim(pairs):
    psnr, ssim = 0.0, 0.0
    for gen_path, gt_path in pairs:
        gt = to_unit(gt_path)
        gen = to_unit(gen_path, (gt.shape[1], gt.shape[0]))
        mse = max(np.mean((gen - gt) ** 2), 1e-10)
        psnr += 10 * np.log10(1.0 / mse)
        ssim += structural_similarity(gen, gt, channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False)
    return psnr / len(pairs), ssim / len(pairs)


def cosine(a, b):
    return 1 - spatial.distance.cosine(a.reshape(-1).double().numpy(), b.reshape(-1).double().numpy())


def eval_embedding(pairs, encode, transform):
    score = 0
    for gen_path, gt_path in pairs:
        features = [encode(transform(Image.open(p).convert("RGB")).unsqueeze(0)) for p in (gen_path, gt_path)]
        score += cosine(*features)
    return score / len(pairs)


def eval_clip_t(pairs, encode_image, encode_text, transform, captions):
    gen_score, gt_score = 0, 0
    for gen_path, gt_path in pairs:
        session, name = gt_path.split("/")[-2], gt_path.split("/")[-1]
        text = encode_text(captions[session][name])
        gen_score += cosine(encode_image(transform(Image.open(gen_path).convert("RGB")).unsqueeze(0)), text)
        gt_score += cosine(encode_image(transform(Image.open(gt_path).convert("RGB")).unsqueeze(0)), text)
    return gen_score / len(pairs), gt_score / len(pairs)


SESSIONS = {"7": 1, "139": 3, "2024": 2}
GT_SIZES = {"7": (40, 36), "139": (48, 48), "2024": (37, 52)}
GEN_SIZES = {"7": (32, 32), "139": (96, 80), "2024": (32, 32)}


def magicbrush_fixture(clip, tokenizer, dino):
    folder = os.path.join(EVAL, "magicbrush")
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(9)
    words = ["a photo of a cat", "the red hat", "a dog at night", "make it snowy", "the newest cats"]
    captions = {}
    for session, turns in SESSIONS.items():
        gt_dir, gen_dir = os.path.join(folder, "gt", session), os.path.join(folder, "generated", session)
        os.makedirs(gt_dir)
        os.makedirs(gen_dir)
        picture(rng, *GT_SIZES[session]).save(os.path.join(gt_dir, f"{session}-input.png"))
        captions[session] = {}
        for k in range(1, turns + 1):
            picture(rng, *GT_SIZES[session]).save(os.path.join(gt_dir, f"{session}-output{k}.png"))
            Image.fromarray(np.full(GT_SIZES[session][::-1], 255, np.uint8)).save(os.path.join(gt_dir, f"{session}-mask{k}.png"))
            captions[session][f"{session}-output{k}.png"] = words[rng.integers(len(words))]
            names = [f"{session}_1.png"] if k == 1 else [f"{session}_inde_{k}.png", f"{session}_iter_{k}.png"]
            for name in names:
                picture(rng, *GEN_SIZES[session]).save(os.path.join(gen_dir, name))
    with open(os.path.join(folder, "local_descriptions.json"), "w") as f:
        json.dump(captions, f, indent=1)

    # Pairs as the official load_data builds them (sessions in sorted order).
    all_turn, final_turn = [], []
    for session in sorted(SESSIONS):
        turns = SESSIONS[session]
        gen = lambda name: f"{folder}/generated/{session}/{session}{name}.png"
        gt = lambda k: f"{folder}/gt/{session}/{session}-output{k}.png"
        all_turn += [(gen("_1" if k == 1 else f"_inde_{k}"), gt(k)) for k in range(1, turns + 1)]
        final_turn.append((gen("_1" if turns == 1 else f"_iter_{turns}"), gt(turns)))

    clip_transform = transforms.Compose([
        transforms.Resize(32, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(32),
        transforms.ToTensor(), transforms.Normalize(CLIP_MEAN, CLIP_STD)])
    dino_transform = transforms.Compose([
        transforms.Resize(32 * 256 // 224, interpolation=3), transforms.CenterCrop(32), transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def clip_image(x):
        with torch.no_grad():
            out = clip.get_image_features(pixel_values=x)
        return getattr(out, "pooler_output", out)

    def clip_text(caption):
        ids = torch.tensor(tokenizer([caption], padding="max_length", max_length=CONTEXT, truncation=True).input_ids)
        with torch.no_grad():
            out = clip.get_text_features(input_ids=ids)
        return getattr(out, "pooler_output", out)

    def dino_cls(x):
        with torch.no_grad():
            return dino(pixel_values=x).last_hidden_state[:, 0]

    # The preprocessed pixels of a shrunk and of an enlarged image, for exact checks.
    probes = {"generated": f"{folder}/generated/139/139_1.png", "gt": f"{folder}/gt/2024/2024-output1.png"}
    pixels = {}
    for key, path in probes.items():
        image = Image.open(path).convert("RGB")
        pixels[f"{key}_clip"] = clip_transform(image).unsqueeze(0).contiguous()
        pixels[f"{key}_dino"] = dino_transform(image).unsqueeze(0).contiguous()
    save_file(pixels, os.path.join(folder, "preprocess.safetensors"))

    reference = {}
    for setting, pairs in [("all_turn", all_turn), ("final_turn", final_turn)]:
        psnr, ssim = eval_psnr_ssim(pairs)
        clip_t, clip_t_oracle = eval_clip_t(pairs, clip_image, clip_text, clip_transform, captions)
        reference[setting] = {
            "pairs": len(pairs),
            "l1": eval_distance(pairs, nn.L1Loss()),
            "l2": eval_distance(pairs, nn.MSELoss()),
            "psnr": psnr,
            "ssim": ssim,
            "clip_i": eval_embedding(pairs, clip_image, clip_transform),
            "dino": eval_embedding(pairs, dino_cls, dino_transform),
            "clip_t": clip_t,
            "clip_t_oracle": clip_t_oracle,
        }
    with open(os.path.join(folder, "reference.json"), "w") as f:
        json.dump(reference, f, indent=1)
    print(json.dumps(reference, indent=1))


# Strings where OpenAI's clip.tokenize (ftfy + html.unescape, as CLIP-T uses it) and a plain
# CLIP tokenizer could disagree.
TRICKY = [
    "a photo of a cat",
    "  A   PHOTO\tof\n the   Cats!!! ",
    "don\u2019t make it snowy\u2026 ok?",
    "\u201cthe red hat\u201d at night",
    "rock &amp; roll &lt;b&gt; it&#39;s &amp;amp; ok",
    "\ufb01ne \ufb02at lowernewest",
    "\uff21 \uff43\uff41\uff54\u3000dog",
    "\u00e9migr\u00e9 caf\u00e9 \u00fcn\u00efc\u00f6d\u00e9 \u65e5\u672c\u8a9e \U0001f600",
    "123 cats at 4:30",
    "",
    "cat " * 30,
]


def openai_tokenizer_fixture():
    """Ids from open_clip's SimpleTokenizer (OpenAI's clip.tokenize, ftfy and all) with the toy
    BPE of loc-core's clip_tokenizer fixture, context 16."""
    import gzip
    import tempfile

    from open_clip.tokenizer import SimpleTokenizer

    merges = open(os.path.join(CORE, "clip_tokenizer", "merges.txt")).read()
    with tempfile.TemporaryDirectory() as tmp:
        bpe = os.path.join(tmp, "bpe.txt.gz")
        with gzip.open(bpe, "wt") as f:
            f.write(merges)
        tokenizer = SimpleTokenizer(bpe, context_length=16)
        ids = tokenizer(TRICKY, context_length=16).tolist()
    # The vocabulary as OpenAI builds it from the merges (bytes, bytes + </w>, one token per
    # merge, then the two special tokens), under the names transformers uses.
    vocab = {t.replace("<start_of_text>", "<|startoftext|>").replace("<end_of_text>", "<|endoftext|>"): i
             for t, i in tokenizer.encoder.items()}
    folder = os.path.join(EVAL, "openai_tokenizer")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write(merges)
    with open(os.path.join(folder, "cases.json"), "w") as f:
        json.dump({"context_length": 16, "cases": [{"text": t, "ids": i} for t, i in zip(TRICKY, ids)]}, f, indent=1,
                  ensure_ascii=False)


if __name__ == "__main__":
    openai_tokenizer_fixture()
    clip_model, clip_tokenizer = clip_fixture()
    dino_model = dino_fixture()
    magicbrush_fixture(clip_model, clip_tokenizer, dino_model)
