#!/usr/bin/env python3
"""deploy/grafana/tecl.json: generated from deploy/tools/make_dashboard.py (and in sync with it),
well-formed (unique ids, panels on the 24-column grid without overlaps, every query on the
dashboard's Prometheus data source), every PromQL query accepted by promtool's parser (as a
recording rule, with Grafana's variables substituted), and the panels operators rely on present.
"""
import json
import re
import tempfile
import unittest

import yaml

import deploy_testlib as lib

PROMTOOL = lib.require_tool("promtool", "scripts/setup installs the Debian package prometheus")
DASHBOARD = lib.DEPLOY_DIR / "grafana" / "tecl.json"


def panels(dashboard):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


class DashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dashboard = json.loads(DASHBOARD.read_text())

    def test_in_sync_with_its_generator(self):
        result = lib.run(["python3", str(lib.DEPLOY_DIR / "tools" / "make_dashboard.py"), "--check"])
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_layout_and_data_source(self):
        ids = [p["id"] for p in panels(self.dashboard)]
        self.assertEqual(len(ids), len(set(ids)), "panel ids must be unique")
        occupied = set()
        for panel in panels(self.dashboard):
            grid = panel["gridPos"]
            self.assertLessEqual(grid["x"] + grid["w"], 24, panel["title"])
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    self.assertNotIn((x, y), occupied, f"{panel['title']} overlaps another panel")
                    occupied.add((x, y))
            if panel["type"] == "row":
                continue
            self.assertEqual(panel["datasource"], {"type": "prometheus", "uid": "${datasource}"}, panel["title"])
            self.assertTrue(panel.get("description"), f"{panel['title']}: say what it shows")
            self.assertTrue(panel["targets"], panel["title"])
            for target in panel["targets"]:
                self.assertTrue(target["expr"].strip(), panel["title"])
        variables = {v["name"]: v for v in self.dashboard["templating"]["list"]}
        self.assertEqual(variables["datasource"]["type"], "datasource")
        self.assertEqual(variables["job_id"]["type"], "query")

    def test_every_query_parses(self):
        rules = []
        for panel in panels(self.dashboard):
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$__rate_interval", "1m")
                expr = re.sub(r"\$\{?(\w+)\}?", "x", expr)
                rules.append({"record": f"dashboard:panel_{panel['id']}_{target['refId'].lower()}", "expr": expr})
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as file:
            yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, file)
            file.flush()
            result = lib.run([PROMTOOL, "check", "rules", file.name])
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn(f"SUCCESS: {len(rules)} rules found", result.stdout)

    def test_operators_panels_are_present(self):
        titles = {p["title"] for p in panels(self.dashboard)}
        for title in ["Jobs by state", "Step rate", "ETA", "Loss terms", "Clips per second",
                      "Step time per rank", "Own time per rank (step minus all-reduce)",
                      "Data wait share per rank", "All-reduce time per rank", "Decode rate",
                      "Bad files", "Coordinator RPC latency (p50, p99)", "Coordinator RPC rate"]:
            self.assertIn(title, titles)


if __name__ == "__main__":
    lib.main()
