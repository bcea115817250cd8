#!/usr/bin/env python3
"""Writes deploy/grafana/tecl.json, the TECL Grafana dashboard, from the panel list below (edit
this file, not the JSON; the deploy tests fail while the two differ):

    python3 deploy/tools/make_dashboard.py          # rewrite the dashboard
    python3 deploy/tools/make_dashboard.py --check  # exit 1 when it is out of date

Rows: jobs (states, step rate, ETA, loss terms, clips/s), per-rank timing (the straggler view:
step, compute, data wait and all-reduce time of every rank), dataloaders (decode rate, batch
build time, bad files, queues), coordinator (RPC rate and latency, store commits, heartbeats),
processes. Every query uses only metric names that the TECL processes expose (checked by the
deploy tests against a running local cluster).
"""
import json
import pathlib
import sys

DEPLOY_DIR = pathlib.Path(__file__).resolve().parent.parent
OUTPUT = DEPLOY_DIR / "grafana" / "tecl.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
JOB = 'job_id=~"$job_id"'
RATE = "$__rate_interval"


class Layout:
    """Places panels left to right in rows of 24 grid units."""

    def __init__(self):
        self.panels = []
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def _id(self):
        self.next_id += 1
        return self.next_id - 1

    def row(self, title):
        self._newline()
        self.panels.append({"type": "row", "title": title, "collapsed": False, "id": self._id(),
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def _newline(self):
        if self.x > 0:
            self.y += self.row_height
            self.x = 0
            self.row_height = 0

    def add(self, panel, width, height):
        if self.x + width > 24:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": height, "w": width, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += width
        self.row_height = max(self.row_height, height)


def targets(*queries):
    """queries: (expr, legend) pairs."""
    return [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr,
             "legendFormat": legend, "range": True}
            for i, (expr, legend) in enumerate(queries)]


def timeseries(title, description, queries, unit="short", stack=False, min_zero=True):
    defaults = {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 10 if not stack else 60,
                                         "showPoints": "never",
                                         "stacking": {"mode": "normal" if stack else "none"}}}
    if min_zero:
        defaults["min"] = 0
    return {"type": "timeseries", "title": title, "description": description,
            "datasource": DATASOURCE, "targets": targets(*queries),
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "right",
                                   "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def stat(title, description, queries, unit="short", thresholds=None, instant=True):
    panel_targets = targets(*queries)
    for target in panel_targets:
        target["instant"] = instant
        target["range"] = not instant
    steps = [{"color": "green", "value": None}]
    for value, color in thresholds or []:
        steps.append({"color": color, "value": value})
    return {"type": "stat", "title": title, "description": description, "datasource": DATASOURCE,
            "targets": panel_targets,
            "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
                            "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "textMode": "value_and_name",
                        "orientation": "auto", "justifyMode": "auto"}}


def table(title, description, queries, unit="short"):
    panel_targets = targets(*queries)
    for target in panel_targets:
        target["instant"] = True
        target["range"] = False
        target["format"] = "table"
    return {"type": "table", "title": title, "description": description, "datasource": DATASOURCE,
            "targets": panel_targets,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"showHeader": True, "footer": {"show": False, "reducer": ["sum"]}},
            "transformations": [{"id": "merge", "options": {}},
                                {"id": "organize", "options": {"excludeByName": {"Time": True}}}]}


def per_rank(expression):
    """`expression` (with {sel} for the selector) aggregated per job and rank."""
    return f"sum by (job_id, rank) ({expression.format(sel='{' + JOB + '}')})"


def build():
    layout = Layout()

    layout.row("Jobs")
    layout.add(stat("Jobs by state", "Jobs the coordinator knows, by state (tecl_coordinator_jobs).",
                    [('sum by (state) (tecl_coordinator_jobs{state=~"pending|scheduled|running|recovering"})',
                      "{{state}}")]), 8, 5)
    layout.add(stat("Finished jobs", "Jobs that ended, by state.",
                    [('sum by (state) (tecl_coordinator_jobs{state=~"succeeded|failed|cancelled"})',
                      "{{state}}")]), 6, 5)
    layout.add(stat("Workers", "Registered workers by kind and state (lost ones are kept for an hour).",
                    [("sum by (kind, state) (tecl_coordinator_workers)", "{{kind}} {{state}}")],
                    thresholds=None), 6, 5)
    layout.add(stat("Recoveries (24h)", "Attempts that failed and were restarted in the last 24 hours.",
                    [("sum(increase(tecl_coordinator_restarts_total[24h]))", "restarts")],
                    thresholds=[(1, "orange"), (5, "red")]), 4, 5)
    layout.add(timeseries(
        "Jobs by state over time", "Stacked count of jobs in each live state.",
        [('sum by (state) (tecl_coordinator_jobs{state=~"pending|scheduled|running|recovering"})', "{{state}}")],
        stack=True), 12, 8)
    layout.add(timeseries(
        "Step rate", "Training steps per second of each job (rank 0's counter).",
        [(f'sum by (job_id) (rate(tecl_worker_steps_total{{{JOB},rank="0"}}[{RATE}]))', "{{job_id}}")],
        unit="ops"), 12, 8)
    layout.add(timeseries(
        "ETA", "Estimated time to each job's last step, from its recent step rate.",
        [(f'max by (job_id) (tecl_worker_eta_seconds{{{JOB},rank="0"}})', "{{job_id}}")],
        unit="s"), 8, 8)
    layout.add(timeseries(
        "Clips per second", "Training clips consumed per second, each job summed over its ranks.",
        [(f"sum by (job_id) (rate(tecl_worker_clips_total{{{JOB}}}[{RATE}]))", "{{job_id}}")],
        unit="short"), 8, 8)
    layout.add(timeseries(
        "Progress", "Step reached by each job (rank 0).",
        [(f'max by (job_id) (tecl_worker_step{{{JOB},rank="0"}})', "{{job_id}}")]), 8, 8)
    layout.add(timeseries(
        "Loss terms", "Rank 0's losses on its latest batch: total and the five terms.",
        [(f'max by (job_id, term) (tecl_worker_loss{{{JOB},rank="0"}})', "{{job_id}} {{term}}")],
        min_zero=False), 24, 9)

    layout.row("Per-rank timing (stragglers)")
    step = per_rank(f"rate(tecl_worker_step_seconds_sum{{sel}}[{RATE}])")
    steps = per_rank(f"rate(tecl_worker_step_seconds_count{{sel}}[{RATE}])")
    wait = per_rank(f"rate(tecl_worker_data_wait_seconds_sum{{sel}}[{RATE}])")
    allreduce = per_rank(f"rate(tecl_worker_allreduce_seconds_sum{{sel}}[{RATE}])")
    layout.add(timeseries(
        "Step time per rank", "Mean wall time of a training step, per rank. In synchronous data "
        "parallel training all ranks of a job show about the same value: the slowest rank sets it.",
        [(f"{step} / {steps}", "{{job_id}} rank {{rank}}")], unit="s"), 12, 8)
    layout.add(timeseries(
        "Own time per rank (step minus all-reduce)", "Compute plus data wait per step. A straggler "
        "stands out here: the others spend the difference waiting inside the all-reduce. The alert "
        "TeclStragglerRank fires above 1.5x the job's median.",
        [(f"({step} - {allreduce}) / {steps}", "{{job_id}} rank {{rank}}")], unit="s"), 12, 8)
    layout.add(timeseries(
        "Data wait share per rank", "Share of step time spent waiting for the next batch "
        "(TeclDataWaitHigh fires above 30%).",
        [(f"{wait} / {step}", "{{job_id}} rank {{rank}}")], unit="percentunit"), 12, 8)
    layout.add(timeseries(
        "All-reduce time per rank", "Time per step in gradient all-reduce not hidden by backward.",
        [(f"{allreduce} / {steps}", "{{job_id}} rank {{rank}}")], unit="s"), 12, 8)

    layout.row("Dataloaders")
    layout.add(timeseries(
        "Decode rate", "Frames decoded per second, and the distinct frames used in clips, per "
        "dataloader.",
        [(f"sum by (instance) (rate(tecl_dataloader_frames_decoded_total[{RATE}]))", "{{instance}} decoded"),
         (f"sum by (instance) (rate(tecl_dataloader_frames_used_total[{RATE}]))", "{{instance}} used")],
        unit="short"), 12, 8)
    layout.add(timeseries(
        "Clips and batches built", "Clips and batches built per second, per dataloader.",
        [(f"sum by (instance) (rate(tecl_dataloader_clips_total[{RATE}]))", "{{instance}} clips"),
         (f"sum by (instance, mode) (rate(tecl_dataloader_batches_total[{RATE}]))",
          "{{instance}} {{mode}} batches")]), 12, 8)
    layout.add(timeseries(
        "Decode and batch build time (p90)", "90th percentile of one video's decode call and of a "
        "batch's decode plus augmentation.",
        [(f"histogram_quantile(0.9, sum by (le) (rate(tecl_dataloader_decode_seconds_bucket[{RATE}])))",
          "decode p90"),
         (f"histogram_quantile(0.9, sum by (le) (rate(tecl_dataloader_batch_build_seconds_bucket[{RATE}])))",
          "batch build p90")], unit="s"), 8, 8)
    layout.add(timeseries(
        "Bad files", "Unreadable or too short videos found (first time each), and videos replaced "
        "in batches, by reason (TeclBadFileRateHigh fires above 2% of clips).",
        [(f"sum by (reason) (increase(tecl_dataloader_bad_files_total[{RATE}]))", "found: {{reason}}"),
         (f"sum by (reason) (increase(tecl_dataloader_videos_skipped_total[{RATE}]))", "replaced: {{reason}}")]),
        8, 8)
    layout.add(timeseries(
        "Queues and streams", "Built batches waiting for their trainer, and open batch streams.",
        [("sum by (instance) (tecl_dataloader_queue_depth)", "{{instance}} queued"),
         ("sum by (instance) (tecl_dataloader_active_streams)", "{{instance}} streams")]), 8, 8)
    layout.add(timeseries(
        "Prepare jobs: videos", "Videos of prepare jobs' shards per second by outcome (prepared = "
        "transcoded and verified, kept = done by an earlier attempt, failed = left out), and the "
        "dataloaders running a shard (docs/prepare.md).",
        [(f"sum by (outcome) (rate(tecl_dataloader_prepare_videos_total[{RATE}]))", "{{outcome}}/s"),
         ("sum(tecl_dataloader_prepare_running)", "loaders preparing")]), 12, 8)
    layout.add(timeseries(
        "Prepare jobs: bytes", "Bytes per second prepare jobs read from sources and wrote as "
        "prepared copies.",
        [(f"sum by (direction) (rate(tecl_dataloader_prepare_bytes_total[{RATE}]))", "{{direction}}")],
        unit="Bps"), 12, 8)

    layout.row("Coordinator")
    coordinator = 'method=~"/tecl.v1.(JobService|MembershipService|RendezvousService)/.*"'
    layout.add(timeseries(
        "Coordinator RPC rate", "RPCs per second by method and status code.",
        [(f"sum by (method, code) (rate(tecl_grpc_server_handled_total{{{coordinator}}}[{RATE}]))",
          "{{method}} {{code}}")], unit="reqps"), 12, 8)
    layout.add(timeseries(
        "Coordinator RPC latency (p50, p99)", "Handling time by method (receipt to status).",
        [(f"histogram_quantile(0.5, sum by (le, method) (rate(tecl_grpc_server_handling_seconds_bucket{{{coordinator}}}[{RATE}])))",
          "p50 {{method}}"),
         (f"histogram_quantile(0.99, sum by (le, method) (rate(tecl_grpc_server_handling_seconds_bucket{{{coordinator}}}[{RATE}])))",
          "p99 {{method}}")], unit="s"), 12, 8)
    layout.add(timeseries(
        "Store commits", "Durable commit time (p50, p99) of the coordinator's SQLite store "
        "(TeclCoordinatorStoreSlow fires at p99 > 0.5 s).",
        [(f"histogram_quantile(0.5, sum by (le) (rate(tecl_coordinator_store_commit_seconds_bucket[{RATE}])))", "p50"),
         (f"histogram_quantile(0.99, sum by (le) (rate(tecl_coordinator_store_commit_seconds_bucket[{RATE}])))", "p99")],
        unit="s"), 8, 8)
    layout.add(timeseries(
        "Write batches per commit", "Mean write batches grouped into one commit (group commit).",
        [(f"sum(rate(tecl_coordinator_store_batches_per_commit_sum[{RATE}])) / "
          f"sum(rate(tecl_coordinator_store_batches_per_commit_count[{RATE}]))", "batches/commit")]), 8, 8)
    layout.add(timeseries(
        "Heartbeat age (max by kind)", "Seconds since the quietest live worker of each kind last "
        "heartbeated; workers are lost at the heartbeat timeout.",
        [("max by (kind) (tecl_coordinator_worker_heartbeat_age_seconds)", "{{kind}}")], unit="s"), 8, 8)
    layout.add(timeseries(
        "Scheduling latency (p50, p90)", "Time from a job's submission to its first placement.",
        [(f"histogram_quantile(0.5, sum by (le) (rate(tecl_coordinator_scheduling_latency_seconds_bucket[{RATE}])))", "p50"),
         (f"histogram_quantile(0.9, sum by (le) (rate(tecl_coordinator_scheduling_latency_seconds_bucket[{RATE}])))", "p90")],
        unit="s"), 12, 8)
    layout.add(timeseries(
        "Worker heartbeat failures and registrations", "Heartbeats of trainers and dataloaders "
        "that did not reach the coordinator, and trainer registrations (more than one per trainer "
        "after losses).",
        [(f"sum by (instance) (rate(tecl_worker_heartbeat_failures_total[{RATE}]))", "{{instance}} failures/s"),
         (f"sum by (instance) (rate(tecl_dataloader_heartbeat_failures_total[{RATE}]))", "{{instance}} failures/s"),
         (f"sum by (instance) (increase(tecl_worker_registrations_total[{RATE}]))", "{{instance}} registrations")]),
        12, 8)

    layout.row("Processes")
    layout.add(timeseries("CPU", "CPU cores used by each TECL process.",
                          [(f"rate(process_cpu_seconds_total[{RATE}])", "{{instance}}")]), 8, 8)
    layout.add(timeseries("Resident memory", "Resident set size of each TECL process.",
                          [("process_resident_memory_bytes", "{{instance}}")], unit="bytes"), 8, 8)
    layout.add(table("Versions and uptime", "Build version and start time of each process.",
                     [("tecl_build_info", ""), ("time() - process_start_time_seconds", "")]), 8, 8)
    layout._newline()

    variables = [
        {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "options": []},
        {"name": "job_id", "label": "Job", "type": "query", "datasource": DATASOURCE,
         "query": {"query": "label_values(tecl_worker_steps_total, job_id)", "refId": "job_id"},
         "definition": "label_values(tecl_worker_steps_total, job_id)",
         "includeAll": True, "multi": True, "allValue": ".*", "current": {}, "hide": 0,
         "refresh": 2, "sort": 1, "options": []},
    ]
    return {
        "title": "TECL",
        "uid": "tecl-overview",
        "description": "TECL training service: jobs, per-rank timing, dataloaders, coordinator. "
                       "Generated by deploy/tools/make_dashboard.py.",
        "tags": ["tecl"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "",
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": variables},
        "panels": layout.panels,
    }


def render():
    return json.dumps(build(), indent=2) + "\n"


def main(argv):
    text = render()
    if argv[1:] == ["--check"]:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is out of date: run python3 deploy/tools/make_dashboard.py")
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
