#!/usr/bin/env python3
"""Every metric name that the alert rules and the Grafana dashboard use is exposed by a running
local cluster: tecl-coordinator, tecl-dataloader and tecl-worker on 127.0.0.1 (port 0) run the CPU
demo job on a tecl-synth data set with one corrupt video; their three /metrics pages are scraped
while the job trains and after it is cancelled, and the union of the names seen (histograms with
_bucket/_sum/_count) must contain every name deploy/ uses.
"""
import time
import unittest

import deploy_testlib as lib
import local_cluster
from metric_names import used_names

local_cluster.require_binaries()


class LiveMetricNamesTest(unittest.TestCase):
    maxDiff = None

    def test_deploy_names_are_exposed_by_the_local_cluster(self):
        used = used_names(lib.DEPLOY_DIR)
        with local_cluster.LocalCluster() as cluster:
            seen = cluster.scrape_names()
            job_id = cluster.submit_long_job()

            def trained_and_complete():
                seen.update(cluster.scrape_names())
                step = int(cluster.job(job_id).get("progress", {}).get("step", 0))
                return step >= 5 and set(used) <= seen

            # Scrape until the job has trained a few steps and every used name was seen, or the
            # deadline passes (the comparison below then names what is missing).
            deadline = time.monotonic() + 180
            while not trained_and_complete() and time.monotonic() < deadline:
                time.sleep(0.5)
            step = int(cluster.job(job_id).get("progress", {}).get("step", 0))
            self.assertGreaterEqual(step, 5, f"the job did not train\n{cluster.diagnostics()}")
            cancel = cluster.cancel(job_id)
            self.assertEqual(cancel.returncode, 0, cancel.stdout + cancel.stderr)
            local_cluster.wait_for(lambda: cluster.job(job_id).get("state") == "JOB_STATE_CANCELLED",
                                   "the job to be cancelled", 60, on_timeout=cluster.diagnostics)
            seen.update(cluster.scrape_names())
            for process in cluster.services:
                self.assertTrue(any(n.startswith("tecl_") for n in local_cluster.exposed_names(cluster.scrape(process))),
                                f"{process.name} exposes no tecl_ metric")
            missing = {name: sorted(set(where)) for name, where in used.items() if name not in seen}
            self.assertEqual(missing, {}, "names used in deploy/ that the running services do not expose "
                                          f"(seen: {sorted(n for n in seen if n.startswith('tecl_'))})")


if __name__ == "__main__":
    lib.main()
