#!/usr/bin/env python3
"""The PyTorch side of `cargo bench -p loc-train --bench hypernet_step [-- --sd15]`: the same
LoRA Reverse step, on diffusers' UNet2DConditionModel with the same configuration (random
weights, frozen), a per-sample LoRA injected by forward hooks on every attention projection
(`to_q`, `to_k`, `to_v`, `to_out.0`), and a hypernetwork of the same shape as LoC-rs's `H`
(fusion, one query per target plus a type embedding, pre-norm decoder blocks, one down/up head
per target shape, `up` heads zero-initialised): `H` generates `+Δ` and `-Δ` for a batch of `2N`,
the DDPM denoising MSE (SD-1.5 schedule) backpropagates into `H`, AdamW updates it. The median of
the timed steps (9 tiny, 5 at SD-1.5) after one warm-up (as the Rust bench), on the threads torch picks (`torch.get_num_threads()`).

    /work/venv-ref/bin/python scripts/bench_hypernet_step_torch.py [--sd15] [--pairs N] [--side S]
        [--device cuda] [--precision bf16]
    (torch, diffusers). `--precision` is the frozen UNet's dtype, as the Rust bench's: `H`, its
    LoRA factors' master copy and the loss stay f32. On a GPU the table adds the peak memory.
"""
import argparse
import time

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from torch import nn

TINY = dict(in_channels=6, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=4, cross_attention_dim=32, norm_num_groups=8)
SD15 = dict(in_channels=8, out_channels=4, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            attention_head_dim=8, cross_attention_dim=768, norm_num_groups=32)
SUFFIXES = (".to_q", ".to_k", ".to_v", ".to_out.0")


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x, memory):
        h = self.norm1(x)
        x = x + self.self_attn(h, h, h, need_weights=False)[0]
        x = x + self.cross_attn(self.norm2(x), memory, memory, need_weights=False)[0]
        return x + self.mlp(self.norm3(x))


class Hypernet(nn.Module):
    def __init__(self, targets, features, width, depth, heads=8, rank=4):
        super().__init__()
        self.targets, self.rank = targets, rank
        types = sorted({name.rsplit(".to_", 1)[-1] for name, _ in targets})
        self.type_ids = torch.tensor([types.index(name.rsplit(".to_", 1)[-1]) for name, _ in targets])
        self.fusion = nn.Linear(2 * features, width)
        self.queries = nn.Parameter(torch.randn(len(targets), width) * 0.02)
        self.type_embedding = nn.Parameter(torch.randn(len(types), width) * 0.02)
        self.decoder = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm_out = nn.LayerNorm(width)
        shapes = sorted({shape for _, shape in targets})
        self.members = {shape: [i for i, (_, s) in enumerate(targets) if s == shape] for shape in shapes}
        self.down = nn.ModuleDict({f"{a}_{b}": nn.Linear(width, rank * a) for a, b in shapes})
        self.up = nn.ModuleDict({f"{a}_{b}": nn.Linear(width, b * rank) for a, b in shapes})
        for up in self.up.values():
            nn.init.zeros_(up.weight)
            nn.init.zeros_(up.bias)

    def forward(self, before, after):
        n = before.shape[0]
        memory = self.fusion(torch.cat([before, after], 1)).unsqueeze(1)
        x = (self.queries + self.type_embedding[self.type_ids]).unsqueeze(0).expand(n, -1, -1)
        for block in self.decoder:
            x = block(x, memory)
        x = self.norm_out(x)
        lora = {}
        for (d_in, d_out), members in self.members.items():
            q = x[:, members]
            down = self.down[f"{d_in}_{d_out}"](q).reshape(n, len(members), self.rank, d_in)
            up = self.up[f"{d_in}_{d_out}"](q).reshape(n, len(members), d_out, self.rank)
            for j, i in enumerate(members):
                lora[self.targets[i][0]] = (down[:, j], up[:, j])
        return lora


def install_hooks(unet, state):
    """Adds `up_n (down_n x_n)` of the sample's LoRA to every target's output."""
    for name, module in unet.named_modules():
        if isinstance(module, nn.Linear) and name.endswith(SUFFIXES):
            def hook(module, inputs, output, name=name):
                down, up = state["lora"][name]
                x = inputs[0]
                down, up = down.to(x.dtype), up.to(x.dtype)
                return output + torch.einsum("nlr,nor->nlo", torch.einsum("nld,nrd->nlr", x, down), up)
            module.register_forward_hook(hook)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sd15", action="store_true")
    parser.add_argument("--pairs", type=int)
    parser.add_argument("--side", type=int)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), {"f32": torch.float32, "bf16": torch.bfloat16}[args.precision]
    config, pairs, side, features, width, depth = (SD15, 1, 32, 1024, 256, 6) if args.sd15 else (TINY, 16, 16, 64, 64, 3)
    pairs, side = args.pairs or pairs, args.side or side
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**config).requires_grad_(False).to(device, dtype)
    targets = [(name, (m.in_features, m.out_features)) for name, m in unet.named_modules()
               if isinstance(m, nn.Linear) and name.endswith(SUFFIXES)]
    hypernet = Hypernet(targets, features, width, depth).to(device)
    hypernet.type_ids = hypernet.type_ids.to(device)
    state = {}
    install_hooks(unet, state)
    optim = torch.optim.AdamW(hypernet.parameters(), lr=1e-4)
    schedule = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
    latent = config["out_channels"]
    context = torch.zeros(2 * pairs, 8, config["cross_attention_dim"], device=device, dtype=dtype)

    def step():
        lora = hypernet(torch.randn(pairs, features, device=device), torch.randn(pairs, features, device=device))
        state["lora"] = {k: (torch.cat([d, d]), torch.cat([u, -u])) for k, (d, u) in lora.items()}
        x0 = torch.randn(2 * pairs, latent, side, side, device=device)
        condition, noise = x0.flip(0), torch.randn_like(x0)
        timesteps = torch.tensor([37 * i % 1000 for i in range(2 * pairs)], device=device)
        noisy = schedule.add_noise(x0, noise, timesteps)
        out = unet(torch.cat([noisy, condition], 1).to(dtype), timesteps, context).sample.float()
        loss = ((out - noise) ** 2).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    step()
    # The median step, as the Rust bench.
    runs = 5 if args.sd15 else 9
    times = []
    for _ in range(runs):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    seconds = sorted(times)[runs // 2]
    name = "SD-1.5 InstructPix2Pix" if args.sd15 else "tiny world"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    memory = f" {torch.cuda.max_memory_allocated(device) / 2**30:.2f} |" if device.type == "cuda" else ""
    print(f"| {name} ({len(targets)} targets) | PyTorch {torch.__version__}, {where} | {args.precision} | "
          f"{pairs} | {side}x{side} | {seconds:.3f} | {pairs / seconds:.2f} |{memory}")


if __name__ == "__main__":
    main()
