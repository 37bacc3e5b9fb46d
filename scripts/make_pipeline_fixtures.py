#!/usr/bin/env python3
"""Reference for the InstructPix2Pix edit loop: diffusers' StableDiffusionInstructPix2PixPipeline
with the tiny UNet (unet_linear) and VAE fixtures, a DDIM scheduler, given prompt embeddings
and initial noise. Run after make_unet_fixtures.py and make_vae_fixtures.py.

    ~/venv-ref/bin/python scripts/make_pipeline_fixtures.py
"""
import os

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel
from safetensors.torch import save_file

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "loc-core", "tests", "fixtures")


def main() -> None:
    unet = UNet2DConditionModel.from_pretrained(os.path.join(FIXTURES, "unet_linear")).eval()
    vae = AutoencoderKL.from_pretrained(os.path.join(FIXTURES, "vae")).eval()
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionInstructPix2PixPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler,
                                                  safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    g = torch.Generator().manual_seed(3)
    image = torch.rand(1, 3, 16, 16, generator=g)
    cond, uncond = torch.randn(1, 5, 12, generator=g), torch.randn(1, 5, 12, generator=g)
    noise = torch.randn(1, 4, 4, 4, generator=g)
    with torch.no_grad():
        out = pipe(image=image, prompt_embeds=cond, negative_prompt_embeds=uncond, latents=noise.clone(), num_inference_steps=4,
                   guidance_scale=7.5, image_guidance_scale=1.5, output_type="pt").images
        latents = pipe(image=image, prompt_embeds=cond, negative_prompt_embeds=uncond, latents=noise.clone(), num_inference_steps=4,
                       guidance_scale=7.5, image_guidance_scale=1.5, output_type="latent").images
    save_file({"image": image, "cond": cond, "uncond": uncond, "noise": noise, "edited": out.contiguous(),
               "latents": latents.contiguous()}, os.path.join(FIXTURES, "pipeline_io.safetensors"))


if __name__ == "__main__":
    main()
