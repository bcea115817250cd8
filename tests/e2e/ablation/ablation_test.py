"""scripts/ablation --scale, shortened: the same global batch on 1 and 2 trainer ranks (2 groups:
2 per rank on one, 1 per rank on two) and on 2 ranks with each rank's own batch (2:local), every
job succeeds, the 2-rank runs really ran two ranks with the global-batch loss and SyncBN on and
off, and the table has a number in every cell and a mean +- spread row per run. Bad arguments are
refused before anything starts.
"""
import os
import pathlib
import re
import subprocess
import tempfile
import unittest

SOURCE_DIR = pathlib.Path(os.environ.get("TECL_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[3]))
BUILD_DIR = pathlib.Path(os.environ.get("TECL_BUILD_DIR_ABS", SOURCE_DIR / "build"))
SCRIPT = SOURCE_DIR / "scripts" / "ablation"


def run(args, work, timeout=900):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TECL_")}
    env.update({"TECL_BUILD_DIR": str(BUILD_DIR), "TECL_ABLATION_DIR": work})
    return subprocess.run([str(SCRIPT)] + args, cwd=SOURCE_DIR, env=env, capture_output=True,
                          text=True, timeout=timeout)


class AblationTest(unittest.TestCase):
    def test_bad_arguments_are_refused(self):
        with tempfile.TemporaryDirectory(prefix="tecl-ablation-") as work:
            for args, field in ((["--scale", "1,3", "--groups", "4"], "--scale"),
                                (["--scale", "0"], "--scale"),
                                (["--scale", "2:global"], "--scale"),
                                (["--scale", "1,2,1"], "--scale"),
                                (["--steps", "-5"], "--steps"),
                                (["--seeds", "100"], "--seeds"),
                                (["--first_seed", "0"], "--first_seed"),
                                (["--frobnicate"], "--frobnicate")):
                result = run(args, work, timeout=60)
                self.assertEqual(result.returncode, 2, f"{args}: {result.stdout}{result.stderr}")
                self.assertIn(field, result.stderr, args)
            self.assertEqual(list(pathlib.Path(work).iterdir()), [], "a refused run wrote files")
        result = run(["--help"], "/nonexistent", timeout=60)
        self.assertEqual(result.returncode, 0)
        self.assertIn("--scale R1,R2", result.stdout)

    def test_scale_runs_equal_global_batch(self):
        with tempfile.TemporaryDirectory(prefix="tecl-ablation-") as work:
            result = run(["--scale", "1,2,2:local", "--groups", "2", "--steps", "6", "--seeds", "2"], work)
            out = result.stdout + result.stderr
            logs = ""
            log_dir = pathlib.Path(work, "cluster", "logs")
            for log in sorted(log_dir.glob("*.log")):
                logs += f"\n--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-10:])
            self.assertEqual(result.returncode, 0, out + logs)
            self.assertIn("6 steps, the full objective, 2 groups per global batch", out)
            number = r"\d+\.\d"
            for name in ("1-rank", "2-ranks", "2-ranks-local", "random-init"):
                self.assertRegex(out, rf"\| {name} \| 2 \|( {number} \+- {number} \|){{6}}", out)
                for seed in (1, 2):
                    self.assertRegex(out, rf"\| {name} \| {seed} \|( {number} \|){{6}} job-\d+ \|", out)
            # Which pretraining job is which, then what its ranks logged.
            jobs = dict(re.findall(r"^(\S+), seed 1: (job-\d+)$", out, re.M))
            worker_logs = "".join(p.read_text(errors="replace") for p in log_dir.glob("worker-*.log"))
            for name, ranks in (("1-rank", 1), ("2-ranks", 2), ("2-ranks-local", 2)):
                job = jobs[name]
                for rank in range(ranks):
                    self.assertRegex(worker_logs, rf"job {job} rank {rank} step 6/6 ", name)
                self.assertNotRegex(worker_logs, rf"job {job} rank {ranks} step", name)
            # The 2-rank jobs' ranks took their contrastive terms and BatchNorm statistics over
            # the global batch, or over their own batch in the -local run.
            for rank in (0, 1):
                self.assertRegex(worker_logs, rf"job {jobs['2-ranks']}: rank {rank} of 2: contrastive "
                                 r"terms over the global batch, BatchNorm statistics over every rank")
                self.assertRegex(worker_logs, rf"job {jobs['2-ranks-local']}: rank {rank} of 2: "
                                 r"contrastive terms over this rank's batch, BatchNorm statistics "
                                 r"over this rank's batch")


if __name__ == "__main__":
    unittest.main(verbosity=2)
