#!/usr/bin/env python3
"""A real Prometheus server (the Debian package's /usr/bin/prometheus) on 127.0.0.1 scrapes the
three metrics ports of a local cluster every second while the CPU demo job trains, with the alert
rules of deploy/prometheus loaded. Its HTTP API must then report a positive step rate for the job,
host-cache hits of the trainer's caching allocator, every rule group evaluating without error on the real series, and every dashboard query executing
without error.
"""
import json
import os
import pathlib
import signal
import subprocess
import time
import unittest
import urllib.parse

import yaml

import deploy_testlib as lib
import local_cluster

PROMETHEUS = lib.require_tool("prometheus", "scripts/setup installs the Debian package prometheus")
local_cluster.require_binaries()


class PrometheusScrapeTest(unittest.TestCase):
    def start_prometheus(self, cluster):
        directory = cluster.root / "prometheus"
        directory.mkdir()
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in sorted((lib.DEPLOY_DIR / "prometheus").glob("*.rules.yml"))],
            "scrape_configs": [
                {"job_name": f"tecl-{p.name}", "static_configs": [{"targets": [f"127.0.0.1:{p.metrics_port}"]}]}
                for p in cluster.services
            ],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = open(directory / "prometheus.log", "w")
        self.addCleanup(log.close)
        process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={directory / 'prometheus.yml'}",
             f"--storage.tsdb.path={directory / 'data'}", "--web.listen-address=127.0.0.1:0",
             "--storage.tsdb.retention.time=1h", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def stop():
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.addCleanup(stop)
        self.prometheus_log = directory / "prometheus.log"

        def ready():
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.prometheus_log.read_text()}")
            for port in local_cluster.listening_ports(process.pid):
                try:
                    status, _ = local_cluster.http_get(f"http://127.0.0.1:{port}/-/ready")
                except OSError:
                    continue
                if status == 200:
                    return port
            return None
        port = local_cluster.wait_for(ready, "prometheus to be ready", 60,
                                      on_timeout=lambda: self.prometheus_log.read_text())
        self.api = f"http://127.0.0.1:{port}/api/v1"

    def get(self, path, **params):
        url = f"{self.api}/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        _, body = local_cluster.http_get(url, timeout=10)
        reply = json.loads(body)
        self.assertEqual(reply["status"], "success", body)
        return reply["data"]

    def query(self, expr):
        return self.get("query", query=expr)["result"]

    def test_prometheus_sees_the_step_rate(self):
        with local_cluster.LocalCluster() as cluster:
            self.start_prometheus(cluster)

            def targets_up():
                active = self.get("targets")["activeTargets"]
                return len(active) == 3 and all(t["health"] == "up" for t in active)
            local_cluster.wait_for(targets_up, "the three targets to be scraped", 60,
                                   on_timeout=lambda: json.dumps(self.get("targets"), indent=1))

            job_id = cluster.submit_long_job()
            rate_query = f'sum by (job_id) (rate(tecl_worker_steps_total{{job_id="{job_id}"}}[10s]))'

            def positive_rate():
                result = self.query(rate_query)
                return result and float(result[0]["value"][1]) > 0 and result
            result = local_cluster.wait_for(
                positive_rate, f"a positive step rate for {job_id} in Prometheus", 240, interval=1.0,
                on_timeout=lambda: f"{self.query(rate_query)}\n{cluster.diagnostics()}")
            self.assertEqual(result[0]["metric"], {"job_id": job_id})
            self.assertGreater(float(result[0]["value"][1]), 0)

            # The trainer's host caching allocator serves the repeating step's tensors.
            def cache_hits():
                result = self.query("tecl_worker_host_cache_hits_total")
                return result and float(result[0]["value"][1]) > 0 and result
            local_cluster.wait_for(cache_hits, "host cache hits in Prometheus", 30, interval=1.0,
                                   on_timeout=lambda: self.query("tecl_worker_host_cache_hits_total"))

            # The rules evaluate on the real series without errors (e.g. label matching).
            def rules_evaluated():
                groups = self.get("rules")["groups"]
                rules = [r for g in groups for r in g["rules"]]
                return rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) and rules
            rules = local_cluster.wait_for(rules_evaluated, "every rule to be evaluated", 30, interval=1.0)
            for rule in rules:
                self.assertEqual(rule["health"], "ok", f"{rule['name']}: {rule.get('lastError')}")

            # Every dashboard query runs (an empty result is fine, an error is not).
            dashboard = json.loads((lib.DEPLOY_DIR / "grafana" / "tecl.json").read_text())
            for panel in dashboard["panels"]:
                for target in panel.get("targets", []):
                    expr = target["expr"].replace("$__rate_interval", "10s").replace("$job_id", ".*")
                    with self.subTest(panel=panel["title"], ref=target["refId"]):
                        self.query(expr)
            cluster.cancel(job_id)


if __name__ == "__main__":
    lib.main()
