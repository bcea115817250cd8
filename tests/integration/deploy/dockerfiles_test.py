#!/usr/bin/env python3
"""Static checks of deploy/docker/*.Dockerfile (no container engine is needed or used): stages and
instructions are well formed, every file copied from the build context exists and passes the
Dockerfile's .dockerignore, the binaries built are the project's tecl_binary targets, the CPU
build stage installs scripts/setup's packages, and the CPU runtime stage's Debian packages exist
and provide every shared library that the built binaries load (checked with ldd and dpkg on this
Debian 12 machine when the binaries are built).
"""
import fnmatch
import pathlib
import re
import shutil
import unittest

import deploy_testlib as lib

DOCKER_DIR = lib.DEPLOY_DIR / "docker"
BINARIES = ["tecl-coordinator", "tecl-dataloader", "tecl-worker", "teclctl", "tecl-synth",
            "tecl-prepare", "tecl-export"]
INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
                "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def parse_dockerfile(path):
    """[(instruction, arguments)] with continuation lines joined and comments dropped."""
    instructions = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        if not full:
            continue
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, f"{path.name}: the last instruction ends with a line continuation"
    return instructions


def stages(instructions):
    """[(stage name or index, [(instruction, arguments)])]."""
    result = []
    for keyword, arguments in instructions:
        if keyword == "FROM":
            match = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", arguments, re.I)
            assert match, f"malformed FROM {arguments}"
            result.append((match.group(2) or str(len(result)), [(keyword, arguments)]))
        elif result:
            result[-1][1].append((keyword, arguments))
        else:
            assert keyword == "ARG", f"{keyword} before the first FROM"
    return result


def ignored(path, patterns):
    """Docker's .dockerignore semantics for the patterns used here (last match wins, "!" re-includes,
    a matching directory covers everything below it)."""
    excluded = False
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern[1:] if negate else pattern
        pattern = pattern.rstrip("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if pattern == "**" or any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            excluded = not negate
    return excluded


def owning_packages(libraries):
    """{library: the Debian package that installed it} (one dpkg call; tries the /lib and /usr/lib
    spellings of merged-/usr systems). Libraries of no package are left out."""
    candidates = {}
    for library in libraries:
        real = str(pathlib.Path(library).resolve())
        spellings = [library, real]
        for path in (library, real):
            if path.startswith("/usr/lib/"):
                spellings.append(path[len("/usr"):])
            elif path.startswith("/lib/"):
                spellings.append("/usr" + path)
        for spelling in spellings:
            candidates.setdefault(spelling, library)
    owners = {}
    output = lib.run(["dpkg", "-S", *candidates]).stdout
    for line in output.splitlines():
        packages, _, path = line.partition(": ")
        if path in candidates and "diversion" not in packages:
            owners.setdefault(candidates[path], packages.split(",")[0].split(":")[0].strip())
    return owners


def declared_binaries():
    names = set()
    for top in ("services", "tools"):
        for cmake in (lib.SOURCE_DIR / top).glob("**/CMakeLists.txt"):
            names.update(re.findall(r"tecl_binary\(\s*([\w-]+)", cmake.read_text()))
    return names


class DockerfileTest(unittest.TestCase):
    def dockerfiles(self):
        files = sorted(DOCKER_DIR.glob("*.Dockerfile"))
        self.assertEqual([f.name for f in files], ["cpu.Dockerfile", "cuda.Dockerfile"])
        return [(path, parse_dockerfile(path)) for path in files]

    def test_instructions_and_stages_are_well_formed(self):
        for path, instructions in self.dockerfiles():
            with self.subTest(dockerfile=path.name):
                self.assertTrue(path.read_text().startswith("# syntax=docker/dockerfile:1"),
                                "BuildKit syntax line (cache mounts, <name>.dockerignore)")
                for keyword, _ in instructions:
                    self.assertIn(keyword, INSTRUCTIONS)
                named = stages(instructions)
                self.assertEqual([name for name, _ in named], ["build", "runtime"])
                for _, body in named:
                    for keyword, arguments in body:
                        match = re.search(r"--from=(\S+)", arguments)
                        if keyword == "COPY" and match:
                            self.assertEqual(match.group(1), "build")

    def test_build_context_sources_exist_and_pass_the_dockerignore(self):
        for path, instructions in self.dockerfiles():
            with self.subTest(dockerfile=path.name):
                ignore = DOCKER_DIR / f"{path.name}.dockerignore"
                self.assertTrue(ignore.is_file(), f"{ignore.name} keeps build outputs out of the context")
                patterns = [l.strip() for l in ignore.read_text().splitlines()
                            if l.strip() and not l.startswith("#")]
                copied = []
                for keyword, arguments in instructions:
                    if keyword in ("COPY", "ADD") and "--from=" not in arguments:
                        words = [w for w in arguments.split() if not w.startswith("--")]
                        copied.extend(words[:-1])
                if path.name == "cpu.Dockerfile":
                    self.assertIn("scripts/setup", copied)
                for source in copied:
                    self.assertTrue((lib.SOURCE_DIR / source).exists(), f"COPY {source}: not in the repository")
                    self.assertFalse(ignored(source.rstrip("/"), patterns), f"COPY {source}: excluded by {ignore.name}")
                    if (lib.SOURCE_DIR / source).is_dir():
                        for child in (lib.SOURCE_DIR / source).rglob("*"):
                            relative = str(child.relative_to(lib.SOURCE_DIR))
                            self.assertFalse(ignored(relative, patterns), relative)
                for excluded in [".git/HEAD", "build/CMakeCache.txt", "deploy/node_modules/x"]:
                    self.assertTrue(ignored(excluded, patterns), f"{excluded} should not be sent to the daemon")

    def test_builds_and_ships_the_project_binaries(self):
        declared = declared_binaries()
        for path, instructions in self.dockerfiles():
            with self.subTest(dockerfile=path.name):
                text = " ".join(arguments for _, arguments in instructions)
                target = re.search(r"--target ((?:[\w-]+ ?)+)", text)
                self.assertIsNotNone(target, "cmake --build ... --target <binaries>")
                self.assertEqual(target.group(1).split(), BINARIES)
                for binary in BINARIES:
                    self.assertIn(f"build/bin/{binary}", text)
                    self.assertIn(binary, declared, f"{binary} is not a tecl_binary target in the tree")
                self.assertIn("-DTECL_BUILD_TESTS=OFF", text)

    def test_runtime_stage_is_non_root_with_a_health_check(self):
        for path, instructions in self.dockerfiles():
            with self.subTest(dockerfile=path.name):
                runtime = dict(stages(instructions))["runtime"]
                keywords = [k for k, _ in runtime]
                user = [a for k, a in runtime if k == "USER"]
                self.assertEqual(user, ["10001:10001"])
                health = [a for k, a in runtime if k == "HEALTHCHECK"]
                self.assertEqual(len(health), 1)
                self.assertIn("/healthz", health[0])
                self.assertIn("ENTRYPOINT", keywords)
                env = " ".join(a for k, a in runtime if k == "ENV")
                self.assertIn("TECL_METRICS_LISTEN=0.0.0.0:9090", env)
                self.assertIn("ldd", " ".join(a for k, a in runtime if k == "RUN"),
                              "the runtime stage fails the build on a missing shared library")

    def test_cpu_build_stage_uses_scripts_setup(self):
        instructions = parse_dockerfile(DOCKER_DIR / "cpu.Dockerfile")
        build = dict(stages(instructions))["build"]
        runs = [a for k, a in build if k == "RUN"]
        self.assertTrue(any(a.startswith("/src/scripts/setup") for a in runs))
        self.assertTrue(build[0][1].startswith("${DEBIAN_IMAGE}"))
        self.assertIn("ARG DEBIAN_IMAGE=debian:bookworm-slim",
                      (DOCKER_DIR / "cpu.Dockerfile").read_text())

    def test_cuda_image_uses_matching_cuda_images_and_the_nccl_path(self):
        text = (DOCKER_DIR / "cuda.Dockerfile").read_text()
        froms = re.findall(r"^FROM (\S+)", text, re.M)
        self.assertEqual(froms, ["nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION}",
                                 "nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION}"])
        self.assertIn("-DTECL_WITH_CUDA=ON", text)
        self.assertIn("LIBTORCH_URL=https://download.pytorch.org/libtorch/cu126/", text)
        self.assertIn("ARG CUDA_VERSION=12.6.", text)

    def cpu_runtime_packages(self):
        runtime = dict(stages(parse_dockerfile(DOCKER_DIR / "cpu.Dockerfile")))["runtime"]
        install = next(a for k, a in runtime if k == "RUN" and "apt-get install" in a)
        words = install.split("apt-get install", 1)[1].split("&&")[0].split()
        return [w for w in words if not w.startswith("-")]

    def test_cpu_runtime_packages_exist(self):
        if not shutil.which("apt-cache") or not pathlib.Path("/etc/debian_version").read_text().startswith("12"):
            self.skipTest("needs apt-cache on Debian 12")
        packages = self.cpu_runtime_packages()
        output = lib.run(["apt-cache", "show", "--no-all-versions", *packages]).stdout
        known = set(re.findall(r"^Package: (\S+)", output, re.M))
        self.assertEqual(sorted(set(packages) - known), [], "not Debian 12 packages")

    def test_cpu_runtime_packages_provide_every_library_the_binaries_load(self):
        if not shutil.which("dpkg") or not pathlib.Path("/etc/debian_version").read_text().startswith("12"):
            self.skipTest("needs dpkg on Debian 12")
        import os
        bin_dir = pathlib.Path(os.environ.get("TECL_BIN_DIR", lib.SOURCE_DIR / "build" / "bin"))
        built = [bin_dir / b for b in BINARIES if (bin_dir / b).is_file()]
        if not built:
            self.skipTest(f"no TECL binary built in {bin_dir}")
        # The CPU image configures with -DTECL_WITH_CUDA=OFF; a host build may link the CUDA
        # runtime and NCCL from /usr/local/cuda (the NCCL path), which the CPU image never loads.
        self.assertIn("-DTECL_WITH_CUDA=OFF", (DOCKER_DIR / "cpu.Dockerfile").read_text())
        loaded = {}
        for binary in built:
            for library in re.findall(r"=> (/\S+)", lib.run(["ldd", str(binary)]).stdout):
                if library.startswith("/usr/local/cuda/"):
                    continue
                loaded.setdefault(library, set()).add(binary.name)
        owners = owning_packages(loaded)
        self.assertEqual(sorted(set(loaded) - set(owners)), [], "libraries of no Debian package")
        needed = {}
        for library, binaries in loaded.items():
            needed.setdefault(owners[library], set()).update(binaries)
        depends = lib.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                           "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
                           *self.cpu_runtime_packages()], timeout=300).stdout
        closure = set(re.findall(r"^([\w.+-]+)", depends, re.M)) | set(re.findall(r"Depends: <?([\w.+-]+)", depends))
        closure = {p.split(":")[0] for p in closure}
        missing = {p: sorted(b) for p, b in needed.items() if p not in closure}
        self.assertEqual(missing, {}, "packages whose libraries the binaries load but the runtime stage "
                                      f"does not install (checked {[b.name for b in built]})")


if __name__ == "__main__":
    lib.main()
