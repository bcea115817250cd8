"""Dataloader failover end to end: a rank with several dataloaders loses one and goes on.

One cluster (coordinator, 5 dataloaders, 2 trainers; every process real, on 127.0.0.1) runs the
same 2-rank tiny3d job (2 dataloaders per rank) twice:
  1. undisturbed: the reference final checkpoint (the SHA-256 of its payload, as registered) and
     encoder export;
  2. disturbed: mid-run a loader of rank 1 is stopped with SIGSTOP (its connection stays open:
     once the batches it had sent are used up, the trainer's stall deadline catches it, long
     before the coordinator's heartbeat timeout), then a loader of rank 0 is killed with SIGKILL
     (its stream breaks: the rank's other loader takes its steps). The coordinator declares the
     stopped one lost first and places the fifth, spare loader in rank 1 in its stead; then the
     killed one, and with no loader free rank 0 goes on with one.
The disturbed job succeeds in its first attempt (restart.max_restarts = 0: a recovery would fail
it) and ends with the reference's exact parameters: batches are a pure function of the cursor,
whichever loader builds them, and training on CPU with one thread and two Gloo ranks is
bit-deterministic. The stopped loader is continued at the end.
"""
import hashlib
import os
import pathlib
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from cluster import Cluster  # noqa: E402

SPEC = "examples/cpu-demo.yaml"
STEPS = 180
# A trainer drops a loader that owes it a batch and sends nothing for STALL_S; the coordinator
# drops one that misses its heartbeats for HEARTBEAT_S, which must exceed STALL_S plus the time the
# trainer takes to use the batches a stopped loader had already sent (gRPC buffers several).
STALL_S = 2
HEARTBEAT_S = 20


def step_of(job):
    return int(job.get("progress", {}).get("step", 0))


def digest(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


class LoaderFailoverEndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(trainers=2, dataloaders=5).__enter__()
        cls.stopped = []

    @classmethod
    def tearDownClass(cls):
        for pid in cls.stopped:  # Nothing is left stopped, whatever happened.
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        cls.cluster.__exit__(None, None, None)

    def run_job(self, name):
        ckpt = self.cluster.root / f"ckpt-{name}"
        job_id = self.cluster.submit(
            SPEC, f"name={name}", f"schedule.total_steps={STEPS}", "schedule.log_interval=10",
            "resources.dataloaders_per_trainer=2", f"checkpoint.interval_steps={STEPS}",
            "resources.prefetch_batches=2", f"checkpoint.dir={ckpt}", "restart.max_restarts=0",
            f"restart.heartbeat_timeout_s={HEARTBEAT_S}", f"restart.loader_stall_timeout_s={STALL_S}",
            "restart.loader_start_timeout_s=30", "restart.collective_timeout_s=60")
        return job_id, ckpt

    def events(self, job_id, kind, text=""):
        return [e for e in self.cluster.events(job_id)
                if e.get("type") == kind and text in e.get("reason", "")]

    def wait_log(self, name, pattern, what, timeout):
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.cluster.log(name)):
            if time.monotonic() > deadline:
                self.fail(f"waiting for {what}\n{self.cluster.logs()}")
            time.sleep(0.2)

    def finished(self, job_id, ckpt):
        job = self.cluster.wait_done(job_id, timeout=240)
        self.assertEqual(job["state"], "JOB_STATE_SUCCEEDED", f"{job.get('reason')}\n{self.cluster.logs()}")
        self.assertEqual(step_of(job), STEPS)
        self.assertEqual(job.get("attempt"), 1, "the job was restarted")
        self.assertEqual(int(job.get("restarts", 0)), 0)
        encoder = ckpt / f"encoder-{STEPS:012d}.tecl"
        self.assertTrue(encoder.is_file(), list(ckpt.iterdir()))
        return job["latest_checkpoint"]["sha256"], digest(encoder)

    def test_a_lost_and_a_stalled_loader_change_nothing(self):
        reference, _ = self.run_job("undisturbed")
        expected = self.finished(reference, self.cluster.root / "ckpt-undisturbed")

        job_id, ckpt = self.run_job("failover")
        self.cluster.wait(job_id, lambda j: step_of(j) >= 10, "step 10", timeout=120)
        rank0 = self.cluster.trainer_running(job_id, 1, 0)
        rank1 = self.cluster.trainer_running(job_id, 1, 1)
        self.assertIsNotNone(rank0, self.cluster.logs())
        self.assertIsNotNone(rank1, self.cluster.logs())

        stopped = self.cluster.dataloaders_of(job_id, 1)[0]
        pid = self.cluster.pid(stopped)
        self.stopped.append(pid)
        os.kill(pid, signal.SIGSTOP)
        # Rank 1's trainer catches it with its stall deadline, not waiting for the coordinator.
        self.wait_log(rank1, rf"sent nothing for step \d+ of job {job_id} rank 1 within {STALL_S}s: "
                             r"stalled", "rank 1's trainer to drop the stopped loader",
                      timeout=HEARTBEAT_S)
        self.assertEqual(self.events(job_id, "worker_lost"), [],
                         "the coordinator declared the stopped loader lost first")

        killed = self.cluster.dataloaders_of(job_id, 0)[0]
        self.cluster.kill(killed)
        self.wait_log(rank0, rf"stream for job {job_id} rank 0 broke at step",
                      "rank 0's stream from the killed loader to break", timeout=60)
        # The coordinator declares the stopped loader lost, places the spare in rank 1, then
        # declares the killed one lost: rank 0 goes on with one loader.
        self.cluster.wait(job_id, lambda j: len(self.events(job_id, "worker_lost")) == 2,
                          "both loaders to be declared lost", timeout=4 * HEARTBEAT_S)
        self.assertLess(step_of(self.cluster.job(job_id)), STEPS,
                        "the job ended before the losses: raise STEPS")

        actual = self.finished(job_id, ckpt)
        os.kill(pid, signal.SIGCONT)
        self.assertEqual(actual, expected,
                         "the final checkpoint and encoder differ from the undisturbed run's\n"
                         f"{self.cluster.logs()}")
        lost = self.events(job_id, "worker_lost")
        self.assertEqual(len(lost), 2, lost)
        self.assertIn("rank 1:", lost[0]["reason"])
        self.assertIn("rank 0:", lost[1]["reason"])
        for event in lost:
            self.assertIn("goes on with 1 dataloader(s), no restart", event["reason"])
        replaced = self.events(job_id, "dataloader_replaced")
        self.assertEqual(len(replaced), 1, replaced)
        self.assertIn("rank 1:", replaced[0]["reason"])
        # Both trainers took their new lists: rank 1 the spare's (version 2; version 1, without
        # the stopped loader, may come in the same heartbeat interval and be skipped), rank 0 the
        # shorter one.
        log0, log1 = self.cluster.log(rank0), self.cluster.log(rank1)
        self.assertRegex(log1, rf"job {job_id} rank 1: dataloaders now \S+, \S+ \(version 2\)")
        self.assertRegex(log0, rf"job {job_id} rank 0: dataloaders now \S+ \(version 1\)")


if __name__ == "__main__":
    unittest.main(verbosity=2)
