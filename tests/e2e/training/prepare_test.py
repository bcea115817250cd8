"""A prepare job end to end: two dataloaders rewrite a Kinetics-like set, one is SIGKILLed mid-job.

A local cluster (coordinator and 2 dataloaders with --write_root; real processes on 127.0.0.1)
gets `teclctl prepare` of a Kinetics-like set written with the ffmpeg CLI (340x256, 30 fps,
10 s, GOP 250 with 3 B-frames, class folders with train/test lists). Once some videos are done, the
dataloader running shard 1 is killed with SIGKILL. The coordinator declares it lost after the
job's heartbeat timeout, stops the other loader and runs the next attempt on the loaders free then
(elastic): it keeps every finished video and transcodes the rest. Checked at the end: the job
succeeded in a later attempt after a worker_lost event; every video has its copy (170x128, every
frame, no B-frames: packets = frames), its stored index and its record; the videos finished
before the kill were not transcoded again (their records untouched, counted as kept); no
temporary file is left; the lists and prepare.json are written with the new names.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from cluster import Cluster  # noqa: E402

CLASSES = 2
VIDEOS_PER_CLASS = 10
FRAMES = 300  # 10 s at 30 fps, GOP 250 with B-frames: Kinetics-like.
HEARTBEAT_S = 3


def write_kinetics_like(root):
    sources = ["testsrc2", "mandelbrot", "testsrc"]
    jobs = []
    for c in range(CLASSES):
        (root / f"class{c}").mkdir(parents=True)
        for v in range(VIDEOS_PER_CLASS):
            src = sources[(c * VIDEOS_PER_CLASS + v) % len(sources)] + "=size=340x256:rate=30"
            out = root / f"class{c}" / f"v{v:02d}.mp4"
            jobs.append(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f",
                         "lavfi", "-i", src, "-ss", str(v % 3), "-frames:v", str(FRAMES),
                         "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt",
                         "yuv420p", "-bf", "3", "-x264-params",
                         "keyint=250:min-keyint=250:scenecut=0", str(out)])
    with ThreadPoolExecutor(max_workers=2) as pool:
        for result in pool.map(lambda cmd: subprocess.run(cmd, capture_output=True, timeout=120),
                               jobs):
            if result.returncode != 0:
                raise AssertionError(f"ffmpeg failed: {result.stderr.decode(errors='replace')}")
    videos = sorted(str(p.relative_to(root)) for p in root.rglob("*.mp4"))
    (root / "trainlist.txt").write_text("".join(f"{v}\n" for v in videos if not v.endswith("9.mp4")))
    (root / "testlist.txt").write_text("".join(f"{v}\n" for v in videos if v.endswith("9.mp4")))
    return videos


def probe(path):
    """(packets, width, height, B-frames) of a video's first stream, read with ffprobe."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
                          "-show_entries", "stream=nb_read_packets,width,height,has_b_frames",
                          "-of", "json", str(path)], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    s = json.loads(out)["streams"][0]
    return int(s["nb_read_packets"]), int(s["width"]), int(s["height"]), int(s["has_b_frames"])


class PrepareEndToEnd(unittest.TestCase):
    def setUp(self):
        if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
            self.skipTest("the ffmpeg CLI is not installed (scripts/setup installs it)")

    def test_prepare_job_survives_a_killed_dataloader(self):
        cluster = Cluster(trainers=0, dataloaders=2, synth=False)
        out = cluster.root / "prepared"
        cluster.write_roots = [out]
        with cluster:
            raw = cluster.data
            videos = write_kinetics_like(raw)
            self.assertEqual(len(videos), CLASSES * VIDEOS_PER_CLASS)
            spec = cluster.root / "prepare.yaml"
            spec.write_text(
                "kind: prepare\nname: kinetics-like\n"
                f"dataset: {{root: {raw}, format: class_folders, train_list: trainlist.txt, "
                "test_list: testlist.txt}\n"
                f"prepare: {{output_root: {out}}}\n"
                "resources: {dataloaders: 2, decode_threads: 1}\n"
                f"restart: {{heartbeat_timeout_s: {HEARTBEAT_S}}}\n")

            # teclctl prepare takes prepare specs only.
            refused = cluster.run("prepare", str(pathlib.Path(os.environ.get(
                "TECL_SOURCE_DIR", ".")) / "examples" / "cpu-demo.yaml"), check=False)
            self.assertEqual(refused.returncode, 4, refused.stderr)
            self.assertIn("kind is not prepare", refused.stderr)

            job_id = cluster.run("prepare", str(spec)).stdout.strip().split()[-1]
            job = cluster.wait(job_id, lambda j: len(j.get("ranks", [])) == 2,
                               "both loaders placed", 60)
            rank1 = next(r["worker_id"] for r in job["ranks"] if r.get("rank", 0) == 1)
            victim = cluster.worker_name(rank1)

            deadline = time.monotonic() + 120
            while len(list(out.rglob("*.mp4.prep"))) < 3:
                self.assertLess(time.monotonic(), deadline, cluster.logs())
                time.sleep(0.05)
            cluster.kill(victim)
            done_before = {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4.prep")}

            job = cluster.wait_done(job_id, 300)
            self.assertEqual(job["state"], "JOB_STATE_SUCCEEDED",
                             f"{job.get('reason')}\n{cluster.logs()}")
            self.assertGreaterEqual(int(job["attempt"]), 2, job)
            events = cluster.events(job_id)
            for e in events:  # The story, for the log.
                print(f"event {e.get('type')}: {e.get('reason')}", file=sys.stderr)
            print(f"killed {victim} with {len(done_before)} videos done; final {job['progress']}",
                  file=sys.stderr)
            self.assertTrue(any(e.get("type") == "worker_lost" for e in events), events)
            progress = job["progress"]["prepare"]
            self.assertEqual(int(progress.get("videos_prepared", 0)) +
                             int(progress.get("videos_kept", 0)), len(videos), progress)
            self.assertGreaterEqual(int(progress.get("videos_kept", 0)), len(done_before), progress)
            self.assertEqual(int(progress.get("videos_failed", 0)), 0, progress)
            self.assertTrue(progress.get("dataset_files_written"), progress)
            # Finished videos were kept, not redone.
            for record, mtime in done_before.items():
                self.assertEqual(record.stat().st_mtime_ns, mtime, f"{record} was written again")
            # Every copy is complete and verified independently; nothing half-written is left.
            self.assertEqual([p.name for p in out.rglob("*") if ".tmp." in p.name], [])
            for video in videos:
                copy = out / video
                self.assertTrue(pathlib.Path(str(copy) + ".tecli").is_file(), copy)
                self.assertIn("status=ok", pathlib.Path(str(copy) + ".prep").read_text())
                self.assertEqual(probe(copy), (FRAMES, 170, 128, 0), copy)
            self.assertEqual((out / "trainlist.txt").read_text(), (raw / "trainlist.txt").read_text())
            self.assertEqual((out / "testlist.txt").read_text(), (raw / "testlist.txt").read_text())
            manifest = json.loads((out / "prepare.json").read_text())
            self.assertEqual(len(manifest["videos"]), len(videos))
            self.assertTrue(all(v["status"] == "ok" and v["frames"] == FRAMES
                                for v in manifest["videos"]), manifest)


if __name__ == "__main__":
    unittest.main(verbosity=2)
