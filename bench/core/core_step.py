#!/usr/bin/env python3
"""The TECL training step in PyTorch Python: the peer of tecl_core_bench (docs/benchmarks.md
"Trainer core").

A line-by-line re-implementation of the C++ trainer core: the backbones of
services/worker/model/backbone.cc (tiny3d, r2plus1d_18, r3d_18, torchvision layout and names), the
heads of model.cc, NormalizeClips, IndexBatch (loss/batch.cc), the two contrastive losses
(loss/losses.cc) and the objective (loss/objective.cc), and Trainer::TrainStep (train/trainer.cc:
gradients reset to None, forward, five losses, backward, loss values to the host, AdamW step with
the warm-up + cosine schedule of train/schedule.cc).

tecl_core_bench runs it as a subprocess. It hands over a workload folder:
  state.tecl       the C++ model's initial state (a SaveCheckpoint file); loaded with strict names
                   and shapes, so both sides start from the same weights and BatchNorm buffers
  batch-NNN.pt     the batches, torch::pickle_save of a dict of the Batch tensors
and reads "name value..." lines from stdout: torch version, threads, parameter count, per-step
seconds and per-step total loss.

  core_step.py --workload DIR --warmup 2 --steps 5 [--threads 1] [--device cuda]
               [--precision fp32|bf16|fp16] [--channels_last] [--torchvision]

On a GPU (--device cuda) the step is timed to the end of its kernels (torch.cuda.synchronize),
the backbone runs under autocast in --precision with the heads and losses in fp32 (fp16 adds
torch.cuda.amp.GradScaler), --channels_last puts the backbone in torch.channels_last_3d, and
--torchvision swaps in torchvision's own r2plus1d_18 / r3d_18 (classifier replaced by Identity;
same parameter names, so the same weights load strictly). It then also prints the device memory
in use at the peak of the steps (total - free, as the C++ side measures it).
"""
import argparse
import contextlib
import glob
import io
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

SEALED_HEADER_BYTES = 56  # services/worker/train/sealed_file.h

# ---------------------------------------------------------------------------------------------
# Model (services/worker/model/backbone.cc, model.cc)


def conv(cin, cout, kernel, stride, padding):
    return nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, bias=False)


class Conv2Plus1D(nn.Sequential):
    """1x3x3 spatial conv to `mid`, BN, ReLU, 3x1x1 temporal conv (children 0, 1, 2, 3)."""

    def __init__(self, cin, cout, mid, stride):
        super().__init__(conv(cin, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1)),
                         nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
                         conv(mid, cout, (3, 1, 1), (stride, 1, 1), (1, 0, 0)))


class BasicBlock(nn.Module):
    def __init__(self, two_plus_one, cin, planes, stride):
        super().__init__()
        mid = (cin * planes * 3 * 3 * 3) // (cin * 3 * 3 + 3 * planes)

        def block_conv(conv_in, conv_stride):
            if two_plus_one:
                return Conv2Plus1D(conv_in, planes, mid, conv_stride)
            return conv(conv_in, planes, (3, 3, 3), (conv_stride,) * 3, (1, 1, 1))

        self.conv1 = nn.Sequential(block_conv(cin, stride), nn.BatchNorm3d(planes),
                                   nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(block_conv(planes, 1), nn.BatchNorm3d(planes))
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(conv(cin, planes, (1, 1, 1), (stride,) * 3, (0, 0, 0)),
                                            nn.BatchNorm3d(planes))

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        out += self.downsample(x) if self.downsample is not None else x
        return out.relu_()


def init_like_torchvision(module):
    for child in module.modules():
        if isinstance(child, nn.Conv3d):
            nn.init.kaiming_normal_(child.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(child, nn.BatchNorm3d):
            nn.init.ones_(child.weight)
            nn.init.zeros_(child.bias)


class VideoResNet(nn.Module):
    feature_dim = 512

    def __init__(self, two_plus_one):
        super().__init__()
        if two_plus_one:
            self.stem = nn.Sequential(conv(3, 45, (1, 7, 7), (1, 2, 2), (0, 3, 3)), nn.BatchNorm3d(45),
                                      nn.ReLU(inplace=True),
                                      conv(45, 64, (3, 1, 1), (1, 1, 1), (1, 0, 0)), nn.BatchNorm3d(64),
                                      nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(conv(3, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3)), nn.BatchNorm3d(64),
                                      nn.ReLU(inplace=True))
        cin = 64
        for i, planes in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}",
                    nn.Sequential(BasicBlock(two_plus_one, cin, planes, stride),
                                  BasicBlock(two_plus_one, planes, planes, 1)))
            cin = planes
        init_like_torchvision(self)

    def forward(self, clips):
        x = self.stem(clips)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
        return x.mean((2, 3, 4))


class Tiny3d(nn.Module):
    feature_dim = 256

    def __init__(self):
        super().__init__()
        channels = (3, 32, 64, 128, 256)
        layers = []
        for i in range(4):
            t_stride = 1 if i == 0 else 2
            layers += [conv(channels[i], channels[i + 1], (3, 3, 3), (t_stride, 2, 2), (1, 1, 1)),
                       nn.BatchNorm3d(channels[i + 1]), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        init_like_torchvision(self)

    def forward(self, clips):
        return self.features(clips).amax((2, 3, 4))


def make_backbone(name):
    if name == "r2plus1d_18":
        return VideoResNet(two_plus_one=True)
    if name == "r3d_18":
        return VideoResNet(two_plus_one=False)
    if name == "tiny3d":
        return Tiny3d()
    raise ValueError(f'model.backbone: "{name}" is not one of r2plus1d_18, r3d_18, tiny3d')


def mlp_head(cin, hidden, cout):
    return nn.Sequential(nn.Linear(cin, hidden, bias=False), nn.BatchNorm1d(hidden),
                         nn.ReLU(inplace=True), nn.Linear(hidden, cout))


class TeclModel(nn.Module):
    """The backbone and all five heads (every loss weight is 1)."""

    def __init__(self, options):
        super().__init__()
        self.backbone = make_backbone(options["backbone"])
        d = self.backbone.feature_dim
        self.psi = mlp_head(2 * d, options["psi_hidden"], options["psi_dim"])
        self.speed = mlp_head(d, options["head_hidden"], options["num_speeds"])
        self.direction = mlp_head(d, options["head_hidden"], 2)
        self.order = mlp_head(2 * d, options["head_hidden"], 3)
        self.projection = mlp_head(d, options["projection_hidden"], options["projection_dim"])

    def forward(self, clips):
        return self.backbone(clips)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_clips(clips, device="cpu", memory_format=torch.contiguous_format):
    """uint8 (N, T, H, W, 3) -> float (N, 3, T, H, W) on `device`, ImageNet-normalised
    (NormalizeClips); the uint8 clips move first."""
    if clips.dtype != torch.uint8 or clips.dim() != 5 or clips.size(4) != 3:
        raise ValueError(f"clips must be uint8 (N, T, H, W, 3), got {clips.dtype} {tuple(clips.shape)}")
    scale = torch.tensor([1.0 / (255.0 * s) for s in IMAGENET_STD]).view(1, 3, 1, 1, 1).to(device)
    shift = torch.tensor([m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]).view(1, 3, 1, 1, 1)
    shift = shift.to(device)
    x = clips.to(device, non_blocking=True).permute(0, 4, 1, 2, 3).contiguous(
        memory_format=memory_format)
    return x.to(torch.float32).mul_(scale).sub_(shift)


# ---------------------------------------------------------------------------------------------
# Batch layout (services/worker/loss/batch.cc), other_clip positives

BEFORE, AFTER, OVERLAP = 1, 2, 3
ROLE_A, ROLE_B = 1, 2


def swapped_relation(r):
    return {BEFORE: AFTER, AFTER: BEFORE, OVERLAP: OVERLAP}[r]


def index_batch(batch, num_speeds):
    """The validated labels the losses consume (IndexBatch)."""
    clips = batch["clips"]
    if clips.dtype != torch.uint8 or clips.dim() != 5 or clips.size(4) != 3:
        raise ValueError("batch: clips must be uint8 (N, T, H, W, 3)")
    relation = batch["relation"].tolist()
    groups = len(relation)
    videos = 2 * groups
    n = clips.size(0)
    if n != 2 * videos:
        raise ValueError(f"batch: {n} clips for {groups} groups; expected {2 * videos}")
    video, group, role, speed, reversed_ = (batch[k].tolist() for k in (
        "video", "group", "role", "speed_index", "reversed"))
    clip_a, clip_b = [-1] * videos, [-1] * videos
    for i in range(n):
        if not 0 <= video[i] < videos or group[i] != video[i] // 2:
            raise ValueError(f"batch: clip {i}: video {video[i]} / group {group[i]} out of layout")
        if not 0 <= speed[i] < num_speeds or reversed_[i] not in (0, 1):
            raise ValueError(f"batch: clip {i}: speed_index or reversed out of range")
        slot = clip_a if role[i] == ROLE_A else clip_b if role[i] == ROLE_B else None
        if slot is None or slot[video[i]] != -1:
            raise ValueError(f"batch: clip {i}: role {role[i]} repeated or invalid")
        slot[video[i]] = i
    for g in range(groups):
        if relation[g] not in (BEFORE, AFTER, OVERLAP):
            raise ValueError(f"batch: group {g}: relation {relation[g]} is invalid")
        v0, v1 = 2 * g, 2 * g + 1
        if (speed[clip_a[v0]] != speed[clip_a[v1]] or speed[clip_b[v0]] != speed[clip_b[v1]] or
                reversed_[clip_a[v0]] != reversed_[clip_a[v1]] or
                reversed_[clip_b[v0]] != reversed_[clip_b[v1]]):
            raise ValueError(f"batch: group {g}: videos have different temporal transformations")

    def key(s_first, s_second, d_first, d_second, r):
        return (((s_first * num_speeds + s_second) * 2 + d_first) * 2 + d_second) * 3 + (r - 1)

    transformation, order = [0] * (2 * videos), [0] * (2 * videos)
    for v in range(videos):
        a, b, r = clip_a[v], clip_b[v], relation[v // 2]
        transformation[v] = key(speed[a], speed[b], reversed_[a], reversed_[b], r)
        transformation[videos + v] = key(speed[b], speed[a], reversed_[b], reversed_[a],
                                         swapped_relation(r))
        order[v] = r - 1
        order[videos + v] = swapped_relation(r) - 1
    positive = [-1] * n
    for v in range(videos):
        positive[clip_a[v]] = clip_b[v]
        positive[clip_b[v]] = clip_a[v]
    anchors = [i for i in range(n) if positive[i] >= 0]
    as_tensor = lambda values: torch.tensor(values, dtype=torch.int64)
    return {
        "num_clips": n,
        "clip_a": as_tensor(clip_a),
        "clip_b": as_tensor(clip_b),
        "speed_label": as_tensor(speed),
        "direction_label": as_tensor(reversed_),
        "video": as_tensor(video),
        "transformation_label": as_tensor(transformation),
        "order_label": as_tensor(order),
        "instance_anchor": as_tensor(anchors),
        "instance_positive": as_tensor([positive[i] for i in anchors]),
    }


# ---------------------------------------------------------------------------------------------
# Losses (services/worker/loss/losses.cc, objective.cc)


def equivariance_loss(z, labels, temperature):
    m = z.size(0)
    anchors = F.normalize(z, dim=1)
    targets = anchors.detach()
    logits = anchors.mm(targets.t()).div(temperature)
    same = labels.unsqueeze(1).eq(labels.unsqueeze(0))
    self_mask = torch.eye(m, dtype=torch.bool, device=z.device)
    positive = same.logical_and(self_mask.logical_not())
    positive_count = positive.sum(1)
    if positive_count.eq(0).any().item():
        raise ValueError("equivariance loss: an anchor has no positive")
    negative_lse = logits.masked_fill(same, -math.inf).logsumexp(1, keepdim=True)
    log_prob = logits - torch.logaddexp(logits, negative_lse)
    return -(log_prob.masked_fill(positive.logical_not(), 0).sum(1) / positive_count)


def instance_loss(g, anchor, positive, video, temperature):
    n = g.size(0)
    if anchor.numel() > 0 and (
            anchor.min().item() < 0 or anchor.max().item() >= n or positive.min().item() < 0 or
            positive.max().item() >= n or positive.eq(anchor).any().item() or
            video.index_select(0, anchor).ne(video.index_select(0, positive)).any().item()):
        raise ValueError("instance loss: bad anchor or positive rows")
    q = F.normalize(g, dim=1)
    logits = q.index_select(0, anchor).mm(q.t()).div(temperature)
    other_video = video.index_select(0, anchor).unsqueeze(1).ne(video.unsqueeze(0))
    is_positive = torch.arange(n, device=g.device).unsqueeze(0).eq(positive.unsqueeze(1))
    candidate = other_video.logical_or(is_positive)
    lse = logits.masked_fill(candidate.logical_not(), -math.inf).logsumexp(1)
    return lse - logits.gather(1, positive.unsqueeze(1)).squeeze(1)


def accuracy(logits, labels):
    with torch.no_grad():
        return logits.argmax(1).eq(labels).to(torch.float32).mean()


TERM_NAMES = ("total", "equivariance", "speed", "direction", "order", "instance",
              "speed_accuracy", "direction_accuracy", "order_accuracy")


def compute_losses(model, features, index, equivariance_temperature=0.1, instance_temperature=0.1):
    """All five terms with weight 1 (ComputeLosses)."""
    terms = {}
    h_a = features.index_select(0, index["clip_a"])
    h_b = features.index_select(0, index["clip_b"])
    pairs = torch.cat([torch.cat([h_a, h_b], 1), torch.cat([h_b, h_a], 1)], 0)
    z = model.psi(pairs)
    terms["equivariance"] = equivariance_loss(z, index["transformation_label"],
                                              equivariance_temperature).mean()
    logits = model.speed(features)
    terms["speed"] = F.cross_entropy(logits, index["speed_label"])
    terms["speed_accuracy"] = accuracy(logits, index["speed_label"])
    logits = model.direction(features)
    terms["direction"] = F.cross_entropy(logits, index["direction_label"])
    terms["direction_accuracy"] = accuracy(logits, index["direction_label"])
    logits = model.order(pairs)
    terms["order"] = F.cross_entropy(logits, index["order_label"])
    terms["order_accuracy"] = accuracy(logits, index["order_label"])
    g = model.projection(features)
    terms["instance"] = instance_loss(g, index["instance_anchor"], index["instance_positive"],
                                      index["video"], instance_temperature).mean()
    weighted = [terms[k] * 1.0 for k in ("equivariance", "speed", "direction", "order", "instance")]
    total = weighted[0]
    for term in weighted[1:]:
        total = total + term
    terms["total"] = total
    return terms


def to_values(terms):
    """The terms on the host in one copy (ToValues)."""
    host = torch.stack([terms[k].detach().to(torch.float64).reshape(()) for k in TERM_NAMES])
    return dict(zip(TERM_NAMES, host.tolist()))


# ---------------------------------------------------------------------------------------------
# Training step (services/worker/train/trainer.cc, schedule.cc)


def learning_rate_at(schedule, step):
    peak = schedule["peak_lr"]
    warmup, total, r = schedule["warmup_steps"], schedule["total_steps"], schedule["final_lr_ratio"]
    step = max(step, 0)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * progress)))


class Trainer:
    def __init__(self, model, schedule, weight_decay=1e-4, betas=(0.9, 0.999), device="cpu",
                 precision="fp32", channels_last=False):
        self.model = model
        self.schedule = schedule
        self.device = torch.device(device)
        self.autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        self.memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
        # GradScaler's defaults are DynamicLossScale's (train/loss_scale.h).
        self.scaler = torch.cuda.amp.GradScaler() if precision == "fp16" else None
        self.step = 0
        self.num_speeds = model.speed[-1].out_features
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.parameters, lr=learning_rate_at(schedule, 0),
                                           betas=betas, weight_decay=weight_decay)

    def train_step(self, batch):
        index = index_batch(batch, self.num_speeds)
        index = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in index.items()}
        for p in self.parameters:
            p.grad = None
        self.model.train()
        clips = normalize_clips(batch["clips"], self.device, self.memory_format)
        # The backbone in the autocast type; the heads and losses in fp32 (Trainer::ForwardBackward).
        autocast = (torch.autocast(self.device.type, dtype=self.autocast_dtype)
                    if self.autocast_dtype is not None else contextlib.nullcontext())
        with autocast:
            features = self.model(clips)
        terms = compute_losses(self.model, features.float(), index)
        if self.scaler is not None:
            self.scaler.scale(terms["total"]).backward()
        else:
            terms["total"].backward()
        values = to_values(terms)
        if not math.isfinite(values["total"]):
            raise FloatingPointError(f"training step {self.step}: the loss is not finite")
        lr = learning_rate_at(self.schedule, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.step += 1
        return values


# ---------------------------------------------------------------------------------------------


def load_pickle(path, skip=0):
    with open(path, "rb") as f:
        return torch.load(io.BytesIO(f.read()[skip:]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", required=True, help="folder written by tecl_core_bench")
    parser.add_argument("--warmup", type=int, default=2, help="untimed-in-median first steps")
    parser.add_argument("--steps", type=int, default=5, help="measured steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--peak_lr", type=float, required=True)
    parser.add_argument("--warmup_steps", type=int, required=True)
    parser.add_argument("--total_steps", type=int, required=True)
    parser.add_argument("--final_lr_ratio", type=float, default=0.0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--channels_last", action="store_true")
    parser.add_argument("--torchvision", action="store_true",
                        help="torchvision's VideoResNet as the backbone (r2plus1d_18, r3d_18)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.backends.cudnn.benchmark = True  # As the C++ trainer sets it on a GPU.

    state = load_pickle(os.path.join(args.workload, "state.tecl"), skip=SEALED_HEADER_BYTES)
    model = TeclModel(state["model_options"])
    backbone_source = "core_step.py"
    if args.torchvision:
        import torchvision.models.video as tv
        name = state["model_options"]["backbone"]
        if name not in ("r2plus1d_18", "r3d_18"):
            sys.exit(f"core_step.py: --torchvision has no {name}")
        model.backbone = getattr(tv, name)()
        model.backbone.fc = nn.Identity()  # VideoResNet's average pool + flatten: our features.
        backbone_source = "torchvision " + __import__("torchvision").__version__
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # strict: every C++ name must exist here with the same shape, and no name may be left over.
    model.load_state_dict(state["tensors"], strict=True)
    model.to(args.device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last_3d)
    batches = [load_pickle(p) for p in sorted(glob.glob(os.path.join(args.workload, "batch-*.pt")))]
    if not batches:
        sys.exit(f"core_step.py: no batch-*.pt in {args.workload}")

    schedule = {"peak_lr": args.peak_lr, "warmup_steps": args.warmup_steps,
                "total_steps": args.total_steps, "final_lr_ratio": args.final_lr_ratio}
    trainer = Trainer(model, schedule, device=args.device, precision=args.precision,
                      channels_last=args.channels_last)
    seconds, losses = [], []
    peak_used = 0
    for step in range(args.warmup + args.steps):
        batch = batches[step % len(batches)]
        start = time.perf_counter()
        values = trainer.train_step(batch)
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
        losses.append(values)
        if cuda:
            free, total = torch.cuda.mem_get_info()
            peak_used = max(peak_used, total - free)
    print("torch", torch.__version__)
    print("backbone", backbone_source)
    if cuda:
        print("device_peak_mib", f"{peak_used / 2**20:.0f}")
    print("threads", torch.get_num_threads())
    print("parameters", parameters)
    print("seconds", *(f"{s:.6f}" for s in seconds))
    print("total", *(f"{v['total']:.17g}" for v in losses))


if __name__ == "__main__":
    main()
