"""A local TECL cluster driven through teclctl, for the end-to-end training tests.

`teclctl local up` starts tecl-coordinator, dataloaders and trainers (tecl-worker) as processes on
127.0.0.1 under a temporary TECL_HOME; jobs are submitted and watched with teclctl, as a user
would. A small synthetic motion data set is written with tecl-synth.

Skips the test (exit 77) when a binary is missing, naming it.
"""
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time

SOURCE_DIR = pathlib.Path(os.environ.get("TECL_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[3]))
BIN_DIR = pathlib.Path(os.environ.get("TECL_BIN_DIR", SOURCE_DIR / "build" / "bin"))
BINARIES = ["tecl-coordinator", "tecl-dataloader", "tecl-worker", "teclctl", "tecl-synth"]

TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"}


def require_binaries():
    missing = [b for b in BINARIES if not (BIN_DIR / b).is_file()]
    if missing:
        print(f"SKIP: {', '.join(missing)} not built in {BIN_DIR} "
              f"(cmake --build build --target {' '.join(BINARIES)})")
        sys.exit(77)


class Cluster:
    """Context manager: writes the data set, `teclctl local up`, and `local down` at the end."""

    def __init__(self, trainers, dataloaders, videos_per_class=4, write_roots=None, synth=True):
        """`write_roots`: folders the dataloaders may write (prepare jobs); `synth`: write the
        synthetic motion set into self.data (else the test writes its own data)."""
        require_binaries()
        self.tmp = tempfile.TemporaryDirectory(prefix="tecl-e2e-")
        self.root = pathlib.Path(self.tmp.name)
        self.home = self.root / "home"
        self.data = self.root / "data"
        self.trainers = trainers
        self.dataloaders = dataloaders
        self.videos_per_class = videos_per_class
        self.write_roots = write_roots or []
        self.synth = synth

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TECL_")}
        env.update({"TECL_HOME": str(self.home), "TECL_LOCAL_BIN_DIR": str(BIN_DIR),
                    "OMP_NUM_THREADS": "1"})
        return env

    def run(self, *args, check=True, timeout=120):
        result = subprocess.run([str(BIN_DIR / "teclctl"), *args], env=self.env(), cwd=self.root,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"teclctl {' '.join(args)} exited {result.returncode}\n"
                                 f"stdout: {result.stdout}\nstderr: {result.stderr}\n"
                                 f"{self.logs()}")
        return result

    def __enter__(self):
        try:
            if self.synth:
                subprocess.run([str(BIN_DIR / "tecl-synth"), f"--out={self.data}", "--classes=6",
                                f"--videos_per_class={self.videos_per_class}", "--frames=48",
                                "--size=64", "--jobs=2"], check=True, capture_output=True,
                               timeout=300)
            up = ["local", "up", f"--trainers={self.trainers}",
                  f"--dataloaders={self.dataloaders}", "--threads=1",
                  f"--checkpoint_roots={self.root}"]
            if self.write_roots:
                up.append("--write_roots=" + ",".join(str(r) for r in self.write_roots))
            self.run(*up, timeout=180)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            self.run("local", "down", check=False, timeout=120)
        finally:
            self.tmp.cleanup()

    # -- jobs -------------------------------------------------------------------------------
    def submit(self, spec, *overrides):
        args = ["submit", str(SOURCE_DIR / spec), f"--set=dataset.root={self.data}"]
        args += [f"--set={o}" for o in overrides]
        return self.run(*args).stdout.strip().split()[-1]

    def job(self, job_id):
        return json.loads(self.run("status", job_id, "--output=json").stdout)

    def events(self, job_id):
        out = self.run("events", job_id, "--output=json").stdout
        decoder, events, pos = json.JSONDecoder(), [], 0
        while True:
            while pos < len(out) and out[pos].isspace():
                pos += 1
            if pos >= len(out):
                return events
            event, pos = decoder.raw_decode(out, pos)
            events.append(event)

    def wait(self, job_id, condition, what, timeout):
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if condition(job):
                return job
            if job.get("state") in TERMINAL or time.monotonic() > deadline:
                raise AssertionError(f"waiting for {what}: job is {job.get('state')} "
                                     f"({job.get('reason')}), progress {job.get('progress')}\n"
                                     f"{self.logs()}")
            time.sleep(0.3)

    def wait_done(self, job_id, timeout):
        return self.wait(job_id, lambda j: j.get("state") in TERMINAL, "the job to finish", timeout)

    # -- processes --------------------------------------------------------------------------
    def pid(self, name):
        return int((self.home / "pids" / f"{name}.pid").read_text().split()[0])

    def trainer_running(self, job_id, attempt, rank):
        """The local-cluster name (worker-N) of the trainer running `rank` of an attempt."""
        pattern = re.compile(rf"job {re.escape(job_id)} attempt {attempt}: rank {rank} of ")
        for log in sorted((self.home / "logs").glob("worker-*.log")):
            if pattern.search(log.read_text(errors="replace")):
                return log.stem
        return None

    def dataloaders_of(self, job_id, rank):
        """The local-cluster names (dataloader-N) of the dataloaders serving `rank` of the job."""
        job = self.job(job_id)
        ids = next(r.get("dataloader_ids", []) for r in job["ranks"] if r.get("rank", 0) == rank)
        workers = json.loads(self.run("workers", "--output=json").stdout).get("workers", [])
        names = []
        for worker_id in ids:
            address = next(w["address"] for w in workers if w["id"] == worker_id)
            said = re.compile(re.escape(address) + r"(?!\d)")  # Not a prefix of another port.
            name = next((log.stem for log in sorted((self.home / "logs").glob("dataloader-*.log"))
                         if said.search(log.read_text(errors="replace"))), None)
            if name is None:
                raise AssertionError(f"no dataloader log names {address}\n{self.logs()}")
            names.append(name)
        return names

    def worker_name(self, worker_id):
        """The local-cluster name (dataloader-N) of a registered dataloader, by its log."""
        workers = json.loads(self.run("workers", "--output=json").stdout).get("workers", [])
        address = next(w["address"] for w in workers if w["id"] == worker_id)
        said = re.compile(re.escape(address) + r"(?!\d)")  # Not a prefix of another port.
        for log in sorted((self.home / "logs").glob("dataloader-*.log")):
            if said.search(log.read_text(errors="replace")):
                return log.stem
        raise AssertionError(f"no dataloader log names {address}\n{self.logs()}")

    def dataloader_of(self, job_id, rank):
        """The local-cluster name (dataloader-N) of a dataloader serving `rank` of the job."""
        return self.dataloaders_of(job_id, rank)[0]

    def kill(self, name):
        os.kill(self.pid(name), signal.SIGKILL)

    def log(self, name):
        return (self.home / "logs" / f"{name}.log").read_text(errors="replace")

    def logs(self, lines=25):
        out = []
        for log in sorted((self.home / "logs").glob("*.log")) if (self.home / "logs").exists() else []:
            text = log.read_text(errors="replace").splitlines()
            out.append(f"--- {log.name} (last {lines} lines)\n" + "\n".join(text[-lines:]))
        return "\n".join(out)
