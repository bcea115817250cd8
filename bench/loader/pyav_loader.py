#!/usr/bin/env python3
"""A typical Python clip loader, the peer of tecl_loader_bench.

It replays the decode calls of a TECL run (one per video: the clips' source frames in output
order, their crop rectangles and flips), so both loaders decode the same frames and produce the
same clips, and does the work a PyTorch data pipeline built on PyAV does for them:

  decode   PyAV, one thread: seek to the keyframe before the first needed frame, decode up to the
           last one, frame.to_ndarray("rgb24") for each needed frame;
  augment  crop by slicing, torch bilinear resize (antialiased) to S x S, horizontal flip, colour
           jitter with p=0.8 (brightness, contrast, saturation 0.4, hue 0.1, in a random order,
           torchvision's ColorJitter semantics) and grayscale with p=0.2, back to uint8;
  batch    stack the clips of every 8 videos into a (N, T, S, S, 3) uint8 array.

Usage: pyav_loader.py --plan PLAN.json --size S --out RESULT   (writes "<seconds> <clips>")
The time excludes interpreter start and imports.
"""
import argparse
import json
import random
import time

import av
import numpy as np
import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)


def grayscale(x):
    """x: (T, 3, H, W) in [0, 1] -> luma, (T, 1, H, W)."""
    return (LUMA[0] * x[:, 0] + LUMA[1] * x[:, 1] + LUMA[2] * x[:, 2]).unsqueeze(1)


def blend(a, b, ratio):
    return (ratio * a + (1.0 - ratio) * b).clamp_(0.0, 1.0)


def rgb_to_hsv(x):
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    value, _ = x.max(dim=1)
    low, _ = x.min(dim=1)
    chroma = value - low
    safe_chroma = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    saturation = torch.where(value > 0, chroma / torch.where(value > 0, value, torch.ones_like(value)),
                             torch.zeros_like(value))
    hue = torch.where(value == r, (g - b) / safe_chroma,
                      torch.where(value == g, 2.0 + (b - r) / safe_chroma, 4.0 + (r - g) / safe_chroma))
    hue = torch.where(chroma > 0, torch.remainder(hue / 6.0, 1.0), torch.zeros_like(hue))
    return hue, saturation, value


def hsv_to_rgb(hue, saturation, value):
    h6 = hue * 6.0
    sector = torch.floor(h6)
    fraction = h6 - sector
    sector = sector.to(torch.int64) % 6
    p = value * (1.0 - saturation)
    q = value * (1.0 - saturation * fraction)
    t = value * (1.0 - saturation * (1.0 - fraction))
    choices = [(value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q)]
    out = []
    for channel in range(3):
        result = torch.zeros_like(value)
        for k, rgb in enumerate(choices):
            result = torch.where(sector == k, rgb[channel], result)
        out.append(result)
    return torch.stack(out, dim=1)


def adjust_hue(x, shift):
    hue, saturation, value = rgb_to_hsv(x)
    return hsv_to_rgb(torch.remainder(hue + shift, 1.0), saturation, value)


def color_augment(x, rng):
    """x: (T, 3, S, S) float in [0, 1]; one draw for the whole clip."""
    if rng.random() < 0.8:
        b, c, s = (rng.uniform(0.6, 1.4) for _ in range(3))
        h = rng.uniform(-0.1, 0.1)
        ops = [0, 1, 2, 3]
        rng.shuffle(ops)
        for op in ops:
            if op == 0:
                x = blend(x, torch.zeros_like(x), b)
            elif op == 1:
                mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
                x = blend(x, mean, c)
            elif op == 2:
                x = blend(x, grayscale(x), s)
            else:
                x = adjust_hue(x, h)
    if rng.random() < 0.2:
        x = grayscale(x).repeat(1, 3, 1, 1)
    return x


def decode(path, needed):
    """Returns {frame index: (H, W, 3) uint8} for the needed frames."""
    frames = {}
    first, last = min(needed), max(needed)
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        rate = stream.average_rate
        base = stream.time_base
        start = stream.start_time or 0
        step = int(round(1 / (rate * base)))
        container.seek(start + first * step, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            index = int(round((frame.pts - start) / step))
            if index in needed:
                frames[index] = frame.to_ndarray(format="rgb24")
            if index >= last:
                break
    return frames


def load_clip(frames, clip, size, rng):
    stack = np.stack([frames[f] for f in clip["frames"]])
    height, width = stack.shape[1:3]
    x, y, w, h = clip["crop"]
    x0, y0 = int(round(x * width)), int(round(y * height))
    x1, y1 = max(x0 + 1, int(round((x + w) * width))), max(y0 + 1, int(round((y + h) * height)))
    tensor = torch.from_numpy(np.ascontiguousarray(stack[:, y0:y1, x0:x1])).permute(0, 3, 1, 2)
    tensor = tensor.float().div_(255.0)
    tensor = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False,
                           antialias=True)
    if clip["flip"]:
        tensor = tensor.flip(-1)
    tensor = color_augment(tensor, rng)
    return tensor.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--plan", required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--videos_per_batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with open(args.plan) as f:
        calls = json.load(f)
    rng = random.Random(7)
    clips = 0
    start = time.perf_counter()
    batch = []
    for i, call in enumerate(calls):
        needed = {f for clip in call["clips"] for f in clip["frames"]}
        frames = decode(call["path"], needed)
        for clip in call["clips"]:
            batch.append(load_clip(frames, clip, args.size, rng))
        if (i + 1) % args.videos_per_batch == 0 or i + 1 == len(calls):
            clips += len(batch)
            torch.stack(batch).numpy()
            batch = []
    seconds = time.perf_counter() - start
    with open(args.out, "w") as f:
        f.write(f"{seconds} {clips}\n")


if __name__ == "__main__":
    main()
