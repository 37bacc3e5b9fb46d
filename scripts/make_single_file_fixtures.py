#!/usr/bin/env python3
"""loc-core/tests/fixtures/sd_layout: a tiny InstructPix2Pix shaped like Stable Diffusion 1.x
(four UNet levels of two resnets, cross-attention in the first three; a four-level VAE), in
the layouts users download:

- diffusers/: the diffusers folder (`save_pretrained`);
- single/: the same weights as one original-layout checkpoint,
  `instruct-pix2pix-tiny.safetensors` (LDM key names `model.diffusion_model.*`,
  `first_stage_model.*`, `cond_stage_model.transformer.*`), written by diffusers' own
  diffusers-to-original conversion, beside the configs, tokenizer and scheduler it needs;
- io.safetensors: a prompt's edit by diffusers' pipeline from the diffusers folder (noise,
  image and the output), which both layouts must reproduce.

The conversion is `scripts/convert_diffusers_to_original_stable_diffusion.py` of the
diffusers repository (not in the pip package): pass its path. It predates the current VAE
attention names, so they are given their older names (`to_q` -> `query`, ...) first, as the
diffusers that wrote it saved them.

    /work/venv-ref/bin/python scripts/make_single_file_fixtures.py PATH/convert_diffusers_to_original_stable_diffusion.py
    (torch, diffusers, transformers, safetensors)
"""
import importlib.util
import os
import shutil
import sys

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CORE = os.path.join(ROOT, "loc-core", "tests", "fixtures")
OUT = os.path.join(CORE, "sd_layout")
SINGLE_FILE = "instruct-pix2pix-tiny.safetensors"
OLD_VAE_ATTENTION = {"to_q.": "query.", "to_k.": "key.", "to_v.": "value.", "to_out.0.": "proj_attn."}


def conversion(path):
    spec = importlib.util.spec_from_file_location("convert", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_pipeline():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=8,
        out_channels=4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=12,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
    )
    # Random weights everywhere (fresh GroupNorms and zero-initialised layers would hide
    # mapping mistakes).
    with torch.no_grad():
        for module in (unet, vae):
            for p in module.parameters():
                p.copy_(torch.randn_like(p) * 0.2)
    tiny = os.path.join(CORE, "tiny_ip2p")
    text_encoder = CLIPTextModel.from_pretrained(os.path.join(tiny, "text_encoder"))
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(tiny, "tokenizer"))
    scheduler = DDIMScheduler.from_pretrained(os.path.join(tiny, "scheduler"))
    return StableDiffusionInstructPix2PixPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def single_file(pipe, convert):
    unet = convert.convert_unet_state_dict(pipe.unet.state_dict())
    vae_state = {}
    for key, value in pipe.vae.state_dict().items():
        if "attentions" in key:
            for new, old in OLD_VAE_ATTENTION.items():
                key = key.replace(new, old)
        vae_state[key] = value
    vae = convert.convert_vae_state_dict(vae_state)
    text = convert.convert_text_enc_state_dict(pipe.text_encoder.state_dict())
    state = {"model.diffusion_model." + k: v for k, v in unet.items()}
    state.update({"first_stage_model." + k: v for k, v in vae.items()})
    state.update({"cond_stage_model.transformer." + k: v for k, v in text.items()})
    return {k: v.contiguous() for k, v in state.items()}


def main():
    convert = conversion(sys.argv[1])
    shutil.rmtree(OUT, ignore_errors=True)
    pipe = tiny_pipeline()
    diffusers_dir = os.path.join(OUT, "diffusers")
    pipe.save_pretrained(diffusers_dir, safe_serialization=True)
    os.remove(os.path.join(diffusers_dir, "model_index.json"))
    # The slow tokenizer's files (what the Rust tokenizer reads), as the fixture it came from.
    shutil.rmtree(os.path.join(diffusers_dir, "tokenizer"))
    shutil.copytree(os.path.join(CORE, "tiny_ip2p", "tokenizer"), os.path.join(diffusers_dir, "tokenizer"))
    single = os.path.join(OUT, "single")
    for part in ("unet", "vae", "text_encoder"):
        os.makedirs(os.path.join(single, part))
        shutil.copy(os.path.join(diffusers_dir, part, "config.json"), os.path.join(single, part, "config.json"))
    for part in ("tokenizer", "scheduler"):
        shutil.copytree(os.path.join(diffusers_dir, part), os.path.join(single, part))
    save_file(single_file(pipe, convert), os.path.join(single, SINGLE_FILE))

    generator = torch.Generator().manual_seed(3)
    image = torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1
    noise = torch.randn(1, 4, 4, 4, generator=generator)
    with torch.no_grad():
        edited = pipe(
            "make it snowy", image=(image + 1) / 2, num_inference_steps=3, guidance_scale=7.5,
            image_guidance_scale=1.5, latents=noise, output_type="pt",
        ).images
    save_file({"image": image, "noise": noise, "edited": edited * 2 - 1}, os.path.join(OUT, "io.safetensors"))


if __name__ == "__main__":
    main()
