"""Loads what model_export_test wrote, the way a user would, and compares features.

Usage: check_export.py DIR   (DIR holds clip.pt and, per backbone, <name>.pt state dicts,
features_<name>.pt, and tiny3d.torchscript). Exits non-zero with a message on any mismatch.
"""
import sys

import torch
import torchvision


def check(name, got, want):
    if got.shape != want.shape:
        sys.exit(f"{name}: features of shape {tuple(got.shape)}, C++ gave {tuple(want.shape)}")
    diff = (got - want).abs().max().item()
    if not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
        sys.exit(f"{name}: features differ from the C++ features by up to {diff:g}")
    print(f"{name}: {tuple(got.shape)} features equal the C++ features (max |diff| {diff:.2g})")


def main(folder):
    clip = torch.load(f"{folder}/clip.pt")
    for name in ("r2plus1d_18", "r3d_18"):
        model = getattr(torchvision.models.video, name)()
        state = torch.load(f"{folder}/{name}.pt")
        result = model.load_state_dict(state, strict=False)
        if sorted(result.missing_keys) != ["fc.bias", "fc.weight"] or result.unexpected_keys:
            sys.exit(f"{name}: missing {result.missing_keys}, unexpected {result.unexpected_keys}")
        model.fc = torch.nn.Identity()
        model.eval()
        with torch.no_grad():
            check(name, model(clip), torch.load(f"{folder}/features_{name}.pt"))
    scripted = torch.jit.load(f"{folder}/tiny3d.torchscript")
    with torch.no_grad():
        check("tiny3d (TorchScript)", scripted(clip), torch.load(f"{folder}/features_tiny3d.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
