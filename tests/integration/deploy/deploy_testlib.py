"""Helpers shared by the deploy tests: paths, commands, skipping, rendering overlays.

Each test is a Python unittest script run by CTest; exit status 77 means "skipped" (CTest's
SKIP_RETURN_CODE) and is used only when a required tool or binary is missing, with a message that
says which and how to get it.
"""
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

SOURCE_DIR = pathlib.Path(os.environ.get("TECL_SOURCE_DIR") or pathlib.Path(__file__).resolve().parents[3])
DEPLOY_DIR = SOURCE_DIR / "deploy"
TESTDATA_DIR = pathlib.Path(__file__).resolve().parent / "testdata"
SKIP = 77

sys.path.insert(0, str(DEPLOY_DIR / "tools"))


def skip(message):
    """Ends the test as skipped (CTest SKIP_RETURN_CODE) with `message`."""
    print(f"SKIPPED: {message}", flush=True)
    sys.exit(SKIP)


def require_tool(name, how_to_get):
    path = shutil.which(name)
    if path is None:
        skip(f"{name} is not installed ({how_to_get})")
    return path


def run(command, *, input_text=None, cwd=None, timeout=120, env=None):
    """Runs `command` (a list); returns CompletedProcess with text stdout/stderr."""
    return subprocess.run(command, input=input_text, cwd=cwd, timeout=timeout, env=env,
                          capture_output=True, text=True)


def overlays():
    return sorted(p.name for p in (DEPLOY_DIR / "k8s" / "overlays").iterdir()
                  if (p / "kustomization.yaml").is_file())


def secret_generator_files(kustomization):
    """(secret name, key, relative path) of every `files:` entry of a kustomization's
    secretGenerator (`key=path` or just `path`)."""
    entries = []
    for generator in kustomization.get("secretGenerator") or []:
        for entry in generator.get("files") or []:
            key, _, path = entry.rpartition("=")
            entries.append((generator["name"], key or pathlib.PurePath(path).name, path))
    return entries


def render_overlay(name):
    """`kubectl kustomize` of an overlay: (objects, raw YAML, stderr). Raises on failure.

    Renders a copy of deploy/k8s without any secrets/ folder an operator may have made; an overlay
    whose secretGenerator reads files under secrets/ (cpu-dev) gets fresh ones from
    deploy/tools/make_dev_secrets.py, as an operator would."""
    with tempfile.TemporaryDirectory(prefix="tecl-k8s-") as scratch:
        k8s = pathlib.Path(scratch) / "k8s"
        shutil.copytree(DEPLOY_DIR / "k8s", k8s, ignore=shutil.ignore_patterns("secrets"))
        overlay = k8s / "overlays" / name
        kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
        if any(path.startswith("secrets/") for _, _, path in secret_generator_files(kustomization)):
            made = run([sys.executable, str(DEPLOY_DIR / "tools" / "make_dev_secrets.py"),
                        "--out", str(overlay / "secrets"), "--quiet"])
            if made.returncode != 0:
                raise AssertionError(f"make_dev_secrets.py failed:\n{made.stdout}{made.stderr}")
        return _render(overlay, name)


def _render(path, name):
    result = run(["kubectl", "kustomize", str(path)])
    if result.returncode != 0:
        version = run(["kubectl", "version", "--client"]).stdout.strip()
        raise AssertionError(f"kubectl kustomize {name} failed (the manifests need kustomize >= v4, "
                             f"i.e. kubectl >= 1.21; this is {version!r}):\n{result.stderr}")
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    return objects, result.stdout, result.stderr


def main():
    """Runs the unittest cases of the calling script; exit status 0 or 1."""
    program = unittest.main(exit=False, verbosity=2)
    sys.exit(0 if program.result.wasSuccessful() else 1)
