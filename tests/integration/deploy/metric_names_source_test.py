#!/usr/bin/env python3
"""Every metric name that deploy/ uses (alert rules, dashboard) is registered somewhere in the
source code (metrics::Build{Counter,Gauge,Histogram}().Name("...") under services/ and tools/,
histograms with their _bucket/_sum/_count series), and the PromQL name extraction that this and
the live test rely on finds exactly the names in sample expressions. The live test
(metric_names_live_test.py) checks the same names against running processes.
"""
import re
import unittest

import deploy_testlib as lib
from metric_names import exposed_names, grafana_query_names, promql_metric_names, used_names

_REGISTRATION = re.compile(r"Build(Counter|Gauge|Histogram)\(\)\s*\.Name\(\s*\"([a-zA-Z_:][\w:]*)\"\s*\)")


def registered_names():
    names = set()
    for top in ("services", "tools"):
        for path in (lib.SOURCE_DIR / top).rglob("*.cc"):
            for kind, name in _REGISTRATION.findall(path.read_text(errors="replace")):
                names.add(name)
                if kind == "Histogram":
                    names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
    return names


class MetricNamesTest(unittest.TestCase):
    maxDiff = None

    def test_extraction(self):
        cases = {
            'sum by (job_id, rank) (rate(a_seconds_sum{job_id=~"$job_id"}[$__rate_interval])) '
            '/ on (job_id) group_left b_count': {"a_seconds_sum", "b_count"},
            'histogram_quantile(0.99, sum by (le) (rate(c_bucket{method=~"/x.Y/.*"}[5m]))) > 0.5': {"c_bucket"},
            'd{state="lost"} - d{state="lost"} offset 10m > 0': {"d"},
            "max_over_time(rate(e_total[1m])[10m:30s]) > 1e3 unless on () f": {"e_total", "f"},
            'quantile by (job_id) (0.5, g) * 1.5 < bool 2': {"g"},
            'label_replace(h, "dst", "$1", "src", "(.*)")': {"h"},
            "time() - process_start_time_seconds": {"process_start_time_seconds"},
        }
        for expr, names in cases.items():
            self.assertEqual(promql_metric_names(expr), names, expr)
        self.assertEqual(grafana_query_names("label_values(i_total{a=\"b\"}, job_id)"), {"i_total"})
        self.assertEqual(grafana_query_names("label_values(job_id)"), set())

    def test_exposition_names(self):
        text = ("# HELP a_seconds x\n# TYPE a_seconds histogram\na_seconds_bucket{le=\"1\"} 1\n"
                "a_seconds_sum 1\na_seconds_count 1\n# TYPE b gauge\nb{x=\"y\"} 2\n")
        self.assertEqual(exposed_names(text), {"a_seconds", "a_seconds_bucket", "a_seconds_sum",
                                               "a_seconds_count", "b"})

    def test_deploy_uses_only_registered_names(self):
        used = used_names(lib.DEPLOY_DIR)
        self.assertGreater(len(used), 20)
        registered = registered_names() | {"process_cpu_seconds_total", "process_resident_memory_bytes",
                                           "process_start_time_seconds", "process_open_fds", "tecl_build_info"}
        missing = {name: sorted(set(where)) for name, where in used.items() if name not in registered}
        self.assertEqual(missing, {}, "names used in deploy/ that no source file registers")


if __name__ == "__main__":
    lib.main()
