"""scripts/quickstart, shortened (--steps 20, 6 videos per class), end to end: every stage runs and
says what it does, the pretraining job and both evaluations succeed, the side-by-side table has a
number in every cell, it says where the metrics are, and no process of the local cluster is left.
"""
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import unittest

SOURCE_DIR = pathlib.Path(os.environ.get("TECL_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[3]))
BUILD_DIR = pathlib.Path(os.environ.get("TECL_BUILD_DIR_ABS", SOURCE_DIR / "build"))


class QuickstartTest(unittest.TestCase):
    def test_shortened_quickstart(self):
        with tempfile.TemporaryDirectory(prefix="tecl-quickstart-") as work:
            env = {k: v for k, v in os.environ.items() if not k.startswith("TECL_")}
            env.update({"TECL_BUILD_DIR": str(BUILD_DIR), "TECL_QUICKSTART_DIR": work})
            result = subprocess.run([str(SOURCE_DIR / "scripts" / "quickstart"), "--steps", "20",
                                     "--videos_per_class", "6"], cwd=SOURCE_DIR, env=env,
                                    capture_output=True, text=True, timeout=1500)
            out = result.stdout + result.stderr
            logs = ""
            for log in sorted(pathlib.Path(work, "cluster", "logs").glob("*.log")):
                logs += f"\n--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            self.assertEqual(result.returncode, 0, out + logs)
            for n in range(1, 8):
                self.assertRegex(out, rf"== \[\s*\d+s\] {n}/7 ", f"stage {n} missing\n{out}")
            self.assertIn("== [", out)
            self.assertRegex(out, r"pretraining job-\d+: 20 steps on 2 ranks, final loss \d+\.\d+")
            self.assertRegex(out, r"TE-CVRL \(20 steps\)\s+random init")
            for k in (1, 5, 10, 20, 50):
                self.assertRegex(out, rf"retrieval R@{k}\s+\d+\.\d%\s+\d+\.\d%")
            self.assertRegex(out, r"linear probe top-1\s+\d+\.\d%\s+\d+\.\d%")
            self.assertRegex(out, r"\d+ test videos queried against \d+ train videos, 6 classes")
            self.assertIn("Metrics:", out)
            # The cluster was stopped: every pid file names a process that is gone.
            for pid_file in pathlib.Path(work, "cluster", "pids").glob("*.pid"):
                pid = int(pid_file.read_text().split()[0])
                self.assertFalse(pathlib.Path(f"/proc/{pid}").exists() and
                                 "zombie" not in pathlib.Path(f"/proc/{pid}/status").read_text().lower(),
                                 f"{pid_file.name}: process {pid} still runs")


if __name__ == "__main__":
    unittest.main(verbosity=2)
