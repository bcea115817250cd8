"""A real TECL cluster on 127.0.0.1 for the live deploy tests: tecl-coordinator, one
tecl-dataloader and one tecl-worker started from the build's bin folder ($TECL_BIN_DIR), every
port chosen by the kernel (port 0). Metrics ports are read from /proc (the process's listening
sockets, the one answering GET /metrics), gRPC ports from --port_file. A synthetic data set from
tecl-synth, with one corrupt video added so that the bad-file metrics exist, and a job from
examples/cpu-demo.yaml shortened with teclctl --set overrides.

Skips the test (exit 77) when a binary is missing, naming it and the build command.
"""
import http.client
import json
import os
import pathlib
import secrets
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import deploy_testlib as lib
from metric_names import exposed_names

BINARIES = ["tecl-coordinator", "tecl-dataloader", "tecl-worker", "teclctl", "tecl-synth"]
BIN_DIR = pathlib.Path(os.environ.get("TECL_BIN_DIR", lib.SOURCE_DIR / "build" / "bin"))


def require_binaries():
    missing = [b for b in BINARIES if not (BIN_DIR / b).is_file()]
    if missing:
        lib.skip(f"{', '.join(missing)} not built in {BIN_DIR} (the live deploy tests need every "
                 f"TECL binary: cmake --build <build dir> --target {' '.join(BINARIES)})")


def http_get(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode(errors="replace")


def wait_for(condition, what, timeout, interval=0.2, on_timeout=None):
    """Polls `condition` until it returns a true value (returned) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = on_timeout() if on_timeout else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{detail}")
        time.sleep(interval)


def listening_ports(pid):
    """TCP ports process `pid` listens on (from /proc)."""
    inodes = set()
    fd_dir = pathlib.Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir() if fd_dir.exists() else []:
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        path = pathlib.Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class Process:
    def __init__(self, name, command, env, log_dir):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "w")
        self.popen = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self.metrics_port = None

    def alive(self):
        return self.popen.poll() is None

    def log_tail(self, lines=40):
        if not self.log.closed:
            self.log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return f"--- {self.name} (exit {self.popen.poll()}), last lines of {self.log_path}:\n" + "\n".join(text[-lines:])

    def find_metrics_port(self, exclude=()):
        """The listening port that answers GET /metrics with the exposition format."""
        for port in sorted(listening_ports(self.popen.pid) - set(exclude)):
            try:
                status, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=1.0)
            except (OSError, urllib.error.URLError, ValueError, http.client.HTTPException):
                continue  # Not HTTP (e.g. the gRPC port).
            if status == 200 and "# TYPE " in body:
                self.metrics_port = port
                return port
        return None

    def metrics_url(self):
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def stop(self):
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log.close()


class LocalCluster:
    """Context manager: starts the cluster, yields itself, stops every process."""

    def __init__(self):
        require_binaries()
        self.tmp = tempfile.TemporaryDirectory(prefix="tecl-deploy-")
        self.root = pathlib.Path(self.tmp.name)
        self.processes = []
        self.coordinator_address = None

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self):
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for process in reversed(self.processes):
            process.stop()
        self.tmp.cleanup()

    def diagnostics(self):
        return "\n".join(p.log_tail() for p in self.processes)

    def _env(self, **variables):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TECL_")}
        env.update({"OMP_NUM_THREADS": "1", "TECL_METRICS_LISTEN": "127.0.0.1:0",
                    "TECL_LISTEN": "127.0.0.1:0"})
        env.update(variables)
        return env

    def _spawn(self, name, command, **variables):
        process = Process(name, command, self._env(**variables), self.root)
        self.processes.append(process)
        return process

    def _read_port_file(self, process, path):
        def ready():
            if not process.alive():
                raise AssertionError(f"{process.name} exited early\n{process.log_tail()}")
            return path.exists() and path.read_text().strip()
        return wait_for(ready, f"{process.name} to write {path.name}", 60, on_timeout=process.log_tail)

    def write_credentials(self):
        """One random token per role and the auth file the servers accept them from, as an
        operator writes them (docs/operations.md): the cluster runs secured, not --insecure."""
        folder = self.root / "secrets"
        folder.mkdir(mode=0o700)
        lines = []
        self.token_files = {}
        for role in ("user", "reader", "trainer", "dataloader"):
            token = secrets.token_hex(32)
            lines.append(f"{role} live-test {token}")
            path = folder / f"{role}.token"
            path.write_text(token + "\n")
            path.chmod(0o600)
            self.token_files[role] = str(path)
        self.auth_file = folder / "auth_file"
        self.auth_file.write_text("\n".join(lines) + "\n")
        self.auth_file.chmod(0o600)

    def _start(self):
        self.write_dataset()
        self.write_credentials()
        state = self.root / "state"
        coordinator = self._spawn(
            "coordinator", [str(BIN_DIR / "tecl-coordinator")],
            TECL_STATE_DIR=str(state), TECL_PORT_FILE=str(self.root / "coordinator.addr"),
            TECL_HEARTBEAT_INTERVAL="200ms", TECL_AUTH_FILE=str(self.auth_file))
        self.coordinator_address = self._read_port_file(coordinator, self.root / "coordinator.addr")
        grpc_port = int(self.coordinator_address.rsplit(":", 1)[1])
        wait_for(lambda: coordinator.find_metrics_port(exclude=[grpc_port]),
                 "the coordinator's metrics port", 30, on_timeout=coordinator.log_tail)
        self.coordinator = coordinator

        dataloader = self._spawn(
            "dataloader", [str(BIN_DIR / "tecl-dataloader")],
            TECL_COORDINATOR=self.coordinator_address, TECL_THREADS="1",
            TECL_PORT_FILE=str(self.root / "dataloader.addr"), TECL_AUTH_FILE=str(self.auth_file),
            TECL_TOKEN_FILE=self.token_files["dataloader"])
        loader_port = int(self._read_port_file(dataloader, self.root / "dataloader.addr").rsplit(":", 1)[1])
        wait_for(lambda: dataloader.find_metrics_port(exclude=[loader_port]),
                 "the dataloader's metrics port", 30, on_timeout=dataloader.log_tail)
        self.dataloader = dataloader

        trainer = self._spawn("trainer", [str(BIN_DIR / "tecl-worker")],
                              TECL_COORDINATOR=self.coordinator_address, TECL_THREADS="1",
                              TECL_TOKEN_FILE=self.token_files["trainer"])
        wait_for(lambda: trainer.find_metrics_port(), "the trainer's metrics port", 60,
                 on_timeout=trainer.log_tail)
        self.trainer = trainer

        def registered():
            samples = self.samples(self.coordinator, "tecl_coordinator_workers")
            idle = {labels.get("kind"): value for labels, value in samples if labels.get("state") == "idle"}
            return idle.get("trainer", 0) >= 1 and idle.get("dataloader", 0) >= 1
        wait_for(registered, "the trainer and the dataloader to register", 60, on_timeout=self.diagnostics)

    # -- data and jobs -----------------------------------------------------------------------
    def write_dataset(self):
        self.data_dir = self.root / "data"
        # Small, so that the corrupt video is sampled within seconds.
        result = lib.run([str(BIN_DIR / "tecl-synth"), f"--out={self.data_dir}", "--classes=3",
                          "--videos_per_class=6", "--frames=32", "--jobs=1"], timeout=300,
                         env=self._env())
        if result.returncode != 0:
            raise AssertionError(f"tecl-synth failed:\n{result.stdout}{result.stderr}")
        train_list = self.data_dir / "trainlist.txt"
        lines = [l for l in train_list.read_text().splitlines() if l.strip()]
        if not lines:
            raise AssertionError(f"tecl-synth wrote an empty {train_list}")
        # One unreadable video in the training list: the dataloader counts it as a bad file.
        first = lines[0].split()[0]
        folder, _, name = first.rpartition("/")
        corrupt = f"{folder}/zz-corrupt{pathlib.Path(name).suffix}" if folder else f"zz-corrupt{pathlib.Path(name).suffix}"
        (self.data_dir / corrupt).write_bytes(b"\x00not a video\x00" * 64)
        rest = lines[0][len(first):]
        train_list.write_text("\n".join(lines + [corrupt + rest]) + "\n")

    def teclctl(self, *arguments, timeout=60):
        return lib.run([str(BIN_DIR / "teclctl"), f"--coordinator={self.coordinator_address}", *arguments],
                       cwd=self.root, timeout=timeout,
                       env=self._env(TECL_TOKEN_FILE=self.token_files["user"]))

    def submit_long_job(self):
        """Submits the CPU demo with one trainer and more steps than the test will wait for;
        returns the job id. The caller cancels it."""
        result = self.teclctl("submit", str(lib.SOURCE_DIR / "examples" / "cpu-demo.yaml"),
                              "--set", f"dataset.root={self.data_dir}",
                              "--set", "resources.trainers=1",
                              "--set", "resources.dataloaders_per_trainer=1",
                              "--set", "schedule.total_steps=100000",
                              "--set", "schedule.log_interval=1",
                              "--set", "checkpoint.interval_steps=20")
        if result.returncode != 0:
            raise AssertionError(f"teclctl submit failed:\n{result.stdout}{result.stderr}\n{self.diagnostics()}")
        return result.stdout.split()[0]

    def job(self, job_id):
        result = self.teclctl("--output=json", "status", job_id)
        if result.returncode != 0:
            raise AssertionError(f"teclctl status failed:\n{result.stdout}{result.stderr}")
        return json.loads(result.stdout)

    def cancel(self, job_id):
        return self.teclctl("cancel", job_id, "--reason=deploy test done")

    # -- metrics -----------------------------------------------------------------------------
    @property
    def services(self):
        return [self.coordinator, self.dataloader, self.trainer]

    def scrape(self, process):
        status, body = http_get(process.metrics_url(), timeout=5.0)
        assert status == 200, f"{process.name} /metrics answered {status}"
        return body

    def scrape_names(self):
        names = set()
        for process in self.services:
            names |= exposed_names(self.scrape(process))
        return names

    def samples(self, process, name):
        """[(labels dict, value)] of metric `name` on `process`'s /metrics page."""
        result = []
        try:
            body = self.scrape(process)
        except (OSError, urllib.error.URLError):
            return result
        for line in body.splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, label_text = head.partition("{")
            if metric != name:
                continue
            labels = {}
            for pair in label_text.rstrip("}").split(","):
                if "=" in pair:
                    key, _, raw = pair.partition("=")
                    labels[key] = raw.strip('"')
            result.append((labels, float(value)))
        return result
