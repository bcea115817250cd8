#!/usr/bin/env python3
"""The build graph as shipped: each binary links only the libraries its job needs (the NEEDED
entries of the built binaries: what they link themselves, not what those libraries pull in). teclctl is a client: no SQLite (the coordinator's store), no civetweb (servers' /metrics),
no LibTorch, no FFmpeg. The coordinator has no LibTorch or FFmpeg; the dataloader no LibTorch or
SQLite; the trainer no SQLite or FFmpeg.
"""
import os
import pathlib
import subprocess
import unittest

BIN = pathlib.Path(os.environ["TECL_BIN_DIR"])

FORBIDDEN = {
    "teclctl": ["libsqlite3", "libcivetweb", "libtorch", "libavcodec", "libavformat"],
    "tecl-coordinator": ["libtorch", "libavcodec", "libavformat"],
    "tecl-dataloader": ["libtorch", "libsqlite3"],
    "tecl-worker": ["libsqlite3", "libavcodec", "libavformat"],
}
REQUIRED = {
    "tecl-coordinator": ["libsqlite3", "libgrpc++"],
    "tecl-dataloader": ["libavcodec", "libgrpc++"],
    "tecl-worker": ["libtorch", "libgrpc++"],
    "teclctl": ["libgrpc++"],
}


def linked(binary):
    out = subprocess.run(["readelf", "-d", str(BIN / binary)], check=True, capture_output=True,
                         text=True)
    return [line.split("[")[1].split("]")[0] for line in out.stdout.splitlines()
            if "(NEEDED)" in line]


class LinkTest(unittest.TestCase):
    def test_each_binary_links_only_what_it_needs(self):
        for binary, forbidden in FORBIDDEN.items():
            libraries = linked(binary)
            for prefix in forbidden:
                self.assertFalse([l for l in libraries if l.startswith(prefix)],
                                 f"{binary} links {prefix}: {libraries}")
            for prefix in REQUIRED[binary]:
                self.assertTrue([l for l in libraries if l.startswith(prefix)],
                                f"{binary} does not link {prefix} (is readelf reading the right file?)")


if __name__ == "__main__":
    unittest.main(verbosity=2)
