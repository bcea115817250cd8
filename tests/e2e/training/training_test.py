"""End-to-end distributed training through teclctl against a local cluster of processes.

One cluster (coordinator, 3 dataloaders, 3 trainers; every process real, on 127.0.0.1) runs three
2-rank tiny3d jobs on a synthetic motion data set, in order:
  1. a clean run: SUCCEEDED at its target step, checkpoints registered, the encoder exported;
     `teclctl export` writes its newest and an older step's encoder, which PyTorch loads;
     `teclctl logs` shows each rank's own log lines, through the coordinator;
  2. a trainer killed with SIGKILL mid-run (a spare trainer is free; before, `teclctl top` shows
     both ranks' step times; `teclctl logs -f` follows the job through its recovery to its end and
     the dead trainer's lines stay readable): the job goes RECOVERING,
     re-gangs, resumes from its newest checkpoint and reaches its target step; from the events,
     no step is trained twice into the final model beyond one checkpoint interval;
  3. a dataloader killed with SIGKILL mid-run (a spare dataloader is free): the same.
"""
import pathlib
import subprocess
import sys
import time
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from cluster import BIN_DIR, Cluster  # noqa: E402

SPEC = "examples/cpu-demo.yaml"
INTERVAL = 10


def step_of(job):
    return int(job.get("progress", {}).get("step", 0))


class TrainingEndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(trainers=3, dataloaders=3).__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.__exit__(None, None, None)

    def submit(self, total_steps, name):
        ckpt = self.cluster.root / f"ckpt-{name}"
        return self.cluster.submit(
            SPEC, f"name={name}", f"schedule.total_steps={total_steps}", "schedule.log_interval=5",
            f"checkpoint.interval_steps={INTERVAL}", f"checkpoint.dir={ckpt}", "checkpoint.keep=2",
            "restart.heartbeat_timeout_s=3", "restart.max_restarts=2",
            "restart.collective_timeout_s=30"), ckpt

    def assert_recovered(self, job_id, killed_at, total_steps):
        job = self.cluster.wait_done(job_id, timeout=300)
        self.assertEqual(job["state"], "JOB_STATE_SUCCEEDED", f"{job.get('reason')}\n{self.cluster.logs()}")
        self.assertEqual(step_of(job), total_steps)
        self.assertEqual(job.get("attempt"), 2,
                         f"exactly one recovery: {self.cluster.events(job_id)}")
        events = self.cluster.events(job_id)
        states = [e.get("to_state") for e in events if e.get("type") == "state"]
        self.assertIn("JOB_STATE_RECOVERING", states)
        # The checkpoints registered by attempt 1, and where attempt 2 resumed.
        checkpoints = [(int(e.get("step", 0)), e.get("attempt", 0)) for e in events
                       if e.get("type") == "checkpoint"]
        first = [s for s, a in checkpoints if a == 1]
        self.assertTrue(first, f"attempt 1 registered no checkpoint: {events}")
        recovering = next(i for i, e in enumerate(events) if e.get("to_state") == "JOB_STATE_RECOVERING")
        resumed = [e for e in events[recovering:] if e.get("to_state") == "JOB_STATE_SCHEDULED"]
        self.assertTrue(resumed, events)
        self.assertIn(f"resuming from step {max(first)}", resumed[0].get("reason", ""))
        # Where attempt 1 failed: the furthest step its surviving ranks reported in their outcomes
        # (exact, unlike the heartbeat progress the coordinator held when it noticed).
        ended = [int(e.get("step", 0)) for e in events
                 if e.get("type") == "outcome" and e.get("attempt", 0) == 1]
        self.assertTrue(ended, f"no rank of attempt 1 reported its outcome: {events}")
        failed_step = max(ended)
        self.assertGreaterEqual(failed_step, killed_at - 1)
        # Attempt 1 registered nothing beyond where it ended, and attempt 2 resumed from its newest
        # registered checkpoint: the steps trained twice are at most one checkpoint interval.
        self.assertLessEqual(max(first), failed_step, checkpoints)
        self.assertLessEqual(failed_step - max(first), INTERVAL,
                             f"resumed from {max(first)}, failed at {failed_step}")

    def test_1_clean_run_succeeds(self):
        job_id, ckpt = self.submit(30, "clean")
        job = self.cluster.wait_done(job_id, timeout=300)
        self.assertEqual(job["state"], "JOB_STATE_SUCCEEDED", f"{job.get('reason')}\n{self.cluster.logs()}")
        self.assertEqual(step_of(job), 30)
        self.assertEqual(job.get("attempt"), 1)
        loss = job["progress"]["loss"]
        for term in ("equivariance", "speed", "direction", "order", "instance"):
            self.assertGreater(loss.get(term, 0), 0, f"loss term {term} missing: {loss}")
        self.assertEqual(int(job["latest_checkpoint"]["step"]), 30)
        self.assertTrue(pathlib.Path(job["latest_checkpoint"]["path"]).is_file())
        self.assertTrue((ckpt / "encoder-000000000030.tecl").is_file(), list(ckpt.iterdir()))
        kept = sorted(p.name for p in ckpt.glob("ckpt-*.tecl"))
        self.assertEqual(kept, ["ckpt-000000000020.tecl", "ckpt-000000000030.tecl"],
                         "checkpoint.keep=2")
        # No temporary file of an interrupted write is left visible or hidden.
        self.assertEqual([p.name for p in ckpt.glob(".*.tmp")], [], list(ckpt.iterdir()))
        # Both ranks trained: each logged its steps.
        for rank in (0, 1):
            self.assertIsNotNone(self.cluster.trainer_running(job_id, 1, rank))
        self.check_export(job_id)
        self.check_logs(job_id)

    def check_logs(self, job_id):
        """The trainers' own log lines, read through the coordinator by rank."""
        rank1 = self.cluster.run("logs", job_id, "--rank=1").stdout.splitlines()
        self.assertTrue(rank1, "no log lines of rank 1")
        self.assertTrue(all(line.startswith("[rank 1, attempt 1] ") for line in rank1), rank1)
        text = "\n".join(rank1)
        self.assertIn(f"running job {job_id} attempt 1 as rank 1/2", text)
        self.assertIn(f"job {job_id} rank 1 step 30/30", text)
        self.assertIn("ended: OUTCOME_SUCCEEDED", text)
        both = self.cluster.run("logs", job_id).stdout
        self.assertIn(f"[rank 0, attempt 1] ", both)
        self.assertIn("checkpoint at step 30", both)  # Rank 0 writes the checkpoints.
        tail = self.cluster.run("logs", job_id, "--rank=0", "--tail=2").stdout.splitlines()
        self.assertEqual(len(tail), 2, tail)
        self.assertIn("ended: OUTCOME_SUCCEEDED", tail[-1])
        missing = self.cluster.run("logs", "job-nope", check=False)
        self.assertEqual(missing.returncode, 5, missing.stderr)

    def check_export(self, job_id):
        out = self.cluster.root / "exports"
        out.mkdir(exist_ok=True)
        newest = self.cluster.run("export", job_id, f"--out={out / 'newest.pt'}").stdout
        self.assertIn("step 30 (tiny3d", newest)
        older = self.cluster.run("export", job_id, "--step=20", "--format=torchscript",
                                 f"--out={out / 'step20.ts'}").stdout
        self.assertIn("step 20 (tiny3d", older)
        missing = self.cluster.run("export", job_id, "--step=7", f"--out={out / 'x.pt'}",
                                   check=False)
        self.assertEqual(missing.returncode, 5, missing.stderr)
        self.assertIn("checkpoints are at steps 20 30", missing.stderr)
        self.assertFalse((out / "x.pt").exists())
        # Debian's interpreter has python3-torch; both files load and give 256 features.
        check = subprocess.run(["/usr/bin/python3", "-c", f'''
import torch
state = torch.load("{out / 'newest.pt'}")
assert "features.0.weight" in state and "features.10.running_var" in state, sorted(state)
scripted = torch.jit.load("{out / 'step20.ts'}")
assert scripted(torch.randn(1, 3, 8, 64, 64)).shape == (1, 256)
'''], capture_output=True, text=True, timeout=120)
        self.assertEqual(check.returncode, 0, check.stderr)

    def test_2_killed_trainer_recovers_from_checkpoint(self):
        job_id, _ = self.submit(60, "kill-trainer")
        self.cluster.wait(job_id, lambda j: step_of(j) >= INTERVAL + 5, "step 15", timeout=300)
        victim = self.cluster.trainer_running(job_id, 1, 1)
        self.assertIsNotNone(victim, self.cluster.logs())
        # teclctl top shows both running ranks with their step times from their heartbeats.
        top = self.cluster.run("top", "--once").stdout
        rows = [line.split() for line in top.splitlines() if line.startswith(f"{job_id}/1 ")]
        self.assertEqual([row[1] for row in rows], ["0", "1"], top)
        for row in rows:
            self.assertRegex(" ".join(row), r" \d+ ms \d+\.\d\d \d+ ms \d+% \d+% ", top)
        # A follower of the job's logs, from before the kill to the job's end.
        follower = subprocess.Popen([str(BIN_DIR / "teclctl"), "logs", job_id, "-f"],
                                    env=self.cluster.env(), cwd=self.cluster.root,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        killed_at = step_of(self.cluster.job(job_id))
        self.cluster.kill(victim)
        self.assert_recovered(job_id, killed_at, 60)
        followed, errors = follower.communicate(timeout=60)
        self.assertEqual(follower.returncode, 0, errors)
        # The dead trainer's lines, before it died, and the recovered attempt's to its end.
        self.assertIn("[rank 1, attempt 1] ", followed)
        self.assertIn(f"[rank 1, attempt 2] ", followed)
        self.assertIn(f"job {job_id} rank 0 step 60/60", followed)
        later = self.cluster.run("logs", job_id).stdout
        self.assertTrue(later.startswith(followed),
                        "following prints what a later read prints, each line once")

    def test_3_killed_dataloader_recovers(self):
        job_id, _ = self.submit(60, "kill-loader")
        self.cluster.wait(job_id, lambda j: step_of(j) >= INTERVAL + 5, "step 15", timeout=300)
        victim = self.cluster.dataloader_of(job_id, 0)
        killed_at = step_of(self.cluster.job(job_id))
        self.cluster.kill(victim)
        self.assert_recovered(job_id, killed_at, 60)


if __name__ == "__main__":
    unittest.main(verbosity=2)
