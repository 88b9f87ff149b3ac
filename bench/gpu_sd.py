"""GPU benchmark of the paper profile's generative arm and encoder, with random weights (nothing downloaded).

Builds Stable Diffusion 1.5's ARCHITECTURE from its published config values (written below: the UNet, the VAE
and the CLIP ViT-L/14 text encoder of stable-diffusion-v1-5's ``*/config.json``), runs it in fp16 as the study
does (four 512x512 images, 25 DPM-Solver++ steps, classifier-free guidance 7.5, so the UNet sees a batch of 8)
and reports seconds per batch of four:

- attention: PyTorch SDPA (``AttnProcessor2_0``, diffusers' default) vs the classic matmul-softmax-matmul
  ``AttnProcessor``;
- ``torch.compile(unet)`` or not (compile time reported separately);
- the study's batching worker (``dressup.pipeline_worker``): P participants asking for four images at once,
  served one request per pipeline call (``max_batch = 4``, what a lock would give) against every waiting image
  in one call (``max_batch = 16``): images/s and each participant's wait.

Also open_clip ``ViT-B-32`` (random weights, fp16) image-encoding throughput, the retrieval arms' encoder.
Random weights make the same number of FLOPs as trained ones; the safety checker (a CLIP ViT-L/14 image
tower, one forward per batch) is not included.

    python bench/gpu_sd.py                  # on a CUDA machine; prints the tables and records them in RESULTS.md
    python bench/gpu_sd.py --skip-compile   # without the torch.compile rows (compiling takes minutes)
    python bench/gpu_sd.py --tiny           # a tiny configuration on any device (checks the script itself)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Run, emit  # noqa: E402

TARGET_S = 2.0  # seconds per four 512x512 images on an H100 (issue 7)

# stable-diffusion-v1-5/stable-diffusion-v1-5, unet/config.json
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1,
    act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=768, attention_head_dim=8,
)
# vae/config.json
SD15_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=512, scaling_factor=0.18215,
)
# text_encoder/config.json (CLIP ViT-L/14's text tower)
SD15_TEXT = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768,
    bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
)
# scheduler/scheduler_config.json (PNDM in the repository; the study swaps in DPM-Solver++ with these betas)
SD15_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    steps_offset=1, prediction_type="epsilon",
)
TINY_UNET = dict(
    sample_size=8, in_channels=4, out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), block_out_channels=(32, 64), layers_per_block=1,
    norm_num_groups=8, cross_attention_dim=32, attention_head_dim=8,
)
TINY_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(16, 32), latent_channels=4, norm_num_groups=8,
)
TINY_TEXT = dict(SD15_TEXT, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 projection_dim=32)


def build_pipeline(tiny: bool, device: torch.device, dtype: torch.dtype):
    """SD1.5's pipeline with random weights (or a tiny one), safety checker off (random weights flag nothing)."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from dressup.generators import clip_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**(TINY_UNET if tiny else SD15_UNET))
    vae = AutoencoderKL(**(TINY_VAE if tiny else SD15_VAE))
    text = CLIPTextModel(CLIPTextConfig(**(TINY_TEXT if tiny else SD15_TEXT)))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=clip_tokenizer(), unet=unet,
                                   scheduler=DPMSolverMultistepScheduler(**SD15_SCHEDULER), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device=device, dtype=dtype)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_batches(pipe, device: torch.device, size: int, steps: int, repeats: int) -> tuple[float, float]:
    """(seconds of the first call, median seconds of ``repeats`` later calls) for one batch of four."""
    def run() -> float:
        sync(device)
        t = time.perf_counter()
        pipe(prompt=["a product photo of a red dress, a single garment on a plain white background"] * 4,
             negative_prompt=["person, face, text, watermark"] * 4, num_inference_steps=steps, guidance_scale=7.5,
             height=size, width=size, generator=[torch.Generator("cpu").manual_seed(i) for i in range(4)],
             output_type="pil")
        sync(device)
        return time.perf_counter() - t

    first = run()
    return first, statistics.median(run() for _ in range(repeats))


def worker_throughput(pipe, size: int, steps: int, participants: int, max_batch: int) -> tuple[float, float]:
    """(images/s, median seconds a participant waits) for ``participants`` asking four images each at once."""
    from concurrent.futures import ThreadPoolExecutor

    from dressup.pipeline_worker import PipelineWorker

    worker = PipelineWorker(pipe, name=f"bench-{max_batch}")
    kwargs = {"num_inference_steps": steps, "guidance_scale": 7.5, "height": size, "width": size, "output_type": "pil"}

    def participant(k: int) -> float:
        t = time.perf_counter()
        worker.run(f"a product photo of garment {k}, a single garment on a plain white background",
                   "person, face, text", [4 * k + i for i in range(4)], kwargs, max_batch)
        return time.perf_counter() - t

    participant(-1)  # warm-up
    t = time.perf_counter()
    with ThreadPoolExecutor(participants) as pool:
        waits = list(pool.map(participant, range(participants)))
    return 4 * participants / (time.perf_counter() - t), statistics.median(waits)


def use_classic_attention(pipe) -> None:
    from diffusers.models.attention_processor import AttnProcessor

    pipe.unet.set_attn_processor(AttnProcessor())
    pipe.vae.set_attn_processor(AttnProcessor())


def use_sdpa(pipe) -> None:
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipe.unet.set_attn_processor(AttnProcessor2_0())
    pipe.vae.set_attn_processor(AttnProcessor2_0())


def vit_images_per_second(tiny: bool, device: torch.device, dtype: torch.dtype, repeats: int) -> tuple[int, float]:
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32").visual.to(device=device, dtype=dtype).eval()
    batch = 4 if tiny else 256
    x = torch.randn(batch, 3, 224, 224, device=device, dtype=dtype)
    with torch.inference_mode():
        model(x)
        times = []
        for _ in range(repeats):
            sync(device)
            t = time.perf_counter()
            model(x)
            sync(device)
            times.append(time.perf_counter() - t)
    return batch, batch / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny configuration, any device (checks the script)")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-compile", action="store_true")
    ap.add_argument("--compile-mode", default="default",
                    help="torch.compile mode for the UNet (default: %(default)s)")
    args = ap.parse_args(argv)
    run = Run.start("gpu_sd", argv)

    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        print("No CUDA GPU here: this benchmark measures fp16 Stable Diffusion 1.5 on a GPU and would take hours "
              "on a CPU. Run it on a GPU machine, or pass --tiny to check the script with a tiny model.",
              file=sys.stderr)
        return 2
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.float16 if cuda else torch.float32
    size, steps = (64, 2) if args.tiny else (args.size, args.steps)
    import diffusers

    name = torch.cuda.get_device_name(0) if cuda else "CPU"
    print(f"device: {name}; torch {torch.__version__}; diffusers {diffusers.__version__}; dtype {dtype}; "
          f"{'TINY config' if args.tiny else 'SD1.5 architecture, random weights'}; 4 images {size}x{size}, "
          f"{steps} steps, CFG 7.5 (UNet batch 8), DPM-Solver++\n")

    rows = []
    pipe = build_pipeline(args.tiny, device, dtype)
    variants = [("SDPA (AttnProcessor2_0)", use_sdpa, False), ("classic (AttnProcessor)", use_classic_attention, False)]
    if not args.skip_compile:
        variants += [("SDPA (AttnProcessor2_0)", use_sdpa, True),
                     ("classic (AttnProcessor)", use_classic_attention, True)]
    eager_unet = pipe.unet
    for label, set_attention, compiled in variants:
        pipe.unet = eager_unet
        set_attention(pipe)
        if compiled:
            torch._dynamo.reset()
            pipe.unet = torch.compile(eager_unet, mode=args.compile_mode)
        first, median = time_batches(pipe, device, size, steps, args.repeats)
        rows.append((label, f"torch.compile ({args.compile_mode})" if compiled else "eager", first, median))
        print(f"  measured: {label}, {'compiled' if compiled else 'eager'}: {median:.2f} s", file=sys.stderr)
    pipe.unet = eager_unet
    use_sdpa(pipe)
    served = []
    for participants in (1, 4, 8) if not args.tiny else (1, 4):
        for label, bound in (("one request per call", 4), ("batched worker", 16)):
            ips, wait = worker_throughput(pipe, size, steps, participants, bound)
            served.append((participants, label, ips, wait))
            print(f"  measured: {participants} participants, {label}: {ips:.2f} images/s", file=sys.stderr)

    best = min(median for *_, median in rows)
    lines = [f"{name}, {'TINY config (checks the script, no figure to compare)' if args.tiny else 'SD1.5 architecture'}"
             f", {dtype}, 4 images {size}x{size}, {steps} steps, CFG 7.5 (UNet batch 8), DPM-Solver++.", "",
             "| attention | UNet | first call (s) | s per batch of 4 (median) | images/s |", "|---|---|---|---|---|"]
    lines += [f"| {label} | {mode} | {first:.2f} | {median:.2f} | {4 / median:.2f} |"
              for label, mode, first, median in rows]
    if not args.tiny:
        lines += ["", f"Best: {best:.2f} s per four images (target <= {TARGET_S:g} s on an H100): "
                      + ("met" if best <= TARGET_S else "**not met**") + "."]
    lines += ["", "Participants asking at once (four images each; eager, SDPA), through `dressup.pipeline_worker`:", "",
              "| participants | serving | images/s | median wait per participant (s) |", "|---|---|---|---|"]
    lines += [f"| {p} | {label} | {ips:.2f} | {wait:.2f} |" for p, label, ips, wait in served]
    del pipe, eager_unet
    if cuda:
        torch.cuda.empty_cache()
    batch, ips = vit_images_per_second(args.tiny, device, dtype, args.repeats)
    lines += ["", "| encoder | batch | images/s |", "|---|---|---|",
              f"| open_clip ViT-B-32 image tower ({dtype}, random) | {batch} | {ips:.0f} |"]
    emit(run, "\n".join(lines), save=not args.tiny)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
