#!/usr/bin/env python3
"""Every kustomize overlay under deploy/k8s/overlays renders, and the rendered objects keep the
deployment's design: a single Recreate coordinator on a ReadWriteOnce volume, gRPC health probes,
resource requests and limits, a headless Service for the trainers with the collective interface
variables, the token mounted from a Secret, budgets, metrics scraping, and (gpu) GPU requests.
"""
import unittest

import yaml

import deploy_testlib as lib

lib.require_tool("kubectl", "scripts/setup installs kubernetes-client; kubectl >= 1.21 has kustomize v4+")

# Objects every overlay must get from elsewhere (created by the operator), by overlay.
EXTERNAL = {"cpu-dev": set(), "gpu": {("Secret", "tecl-auth")}}
WORKLOADS = {"tecl-coordinator": "Deployment", "tecl-dataloader": "Deployment",
             "tecl-trainer": "StatefulSet"}
GRPC_PORTS = {"tecl-coordinator": 7070, "tecl-dataloader": 7080, "tecl-trainer": 7090}


def find(objects, kind, name):
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    if not matches:
        raise AssertionError(f"no {kind}/{name} among {[(o['kind'], o['metadata']['name']) for o in objects]}")
    return matches[0]


def find_prefix(objects, kind, prefix):
    """Generated objects carry a hash suffix (tecl-config-<hash>)."""
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(prefix)]
    return matches[0] if matches else None


def container(workload):
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']}: expected one container"
    return containers[0]


class OverlayTest(unittest.TestCase):
    rendered = {}

    @classmethod
    def setUpClass(cls):
        for overlay in lib.overlays():
            cls.rendered[overlay] = lib.render_overlay(overlay)

    def each_overlay(self):
        self.assertEqual(sorted(self.rendered), sorted(EXTERNAL),
                         "every overlay must be listed in EXTERNAL (and in docs/operations.md)")
        return [(overlay, objects) for overlay, (objects, _, _) in sorted(self.rendered.items())]

    def test_renders_without_warnings(self):
        for overlay, _ in self.each_overlay():
            with self.subTest(overlay=overlay):
                stderr = self.rendered[overlay][2]
                self.assertEqual(stderr.strip(), "", f"kustomize warnings (deprecated fields?):\n{stderr}")

    def test_everything_in_the_tecl_namespace(self):
        for overlay, objects in self.each_overlay():
            with self.subTest(overlay=overlay):
                find(objects, "Namespace", "tecl")
                for o in objects:
                    if o["kind"] != "Namespace":
                        self.assertEqual(o["metadata"].get("namespace"), "tecl",
                                         f"{o['kind']}/{o['metadata']['name']} is outside the tecl namespace")

    def test_coordinator_is_a_single_recreate_writer_on_a_read_write_once_volume(self):
        for overlay, objects in self.each_overlay():
            with self.subTest(overlay=overlay):
                deployment = find(objects, "Deployment", "tecl-coordinator")
                self.assertEqual(deployment["spec"]["replicas"], 1)
                self.assertEqual(deployment["spec"]["strategy"], {"type": "Recreate"})
                pod = deployment["spec"]["template"]["spec"]
                volumes = {v["name"]: v for v in pod["volumes"]}
                mounts = {m["mountPath"]: m["name"] for m in container(deployment)["volumeMounts"]}
                args = container(deployment)["args"]
                self.assertIn("--state_dir=/var/lib/tecl/state", args)
                state_claim = volumes[mounts["/var/lib/tecl/state"]]["persistentVolumeClaim"]["claimName"]
                claim = find(objects, "PersistentVolumeClaim", state_claim)
                self.assertEqual(claim["spec"]["accessModes"], ["ReadWriteOnce"])

    def test_checkpoints_are_shared_at_the_coordinators_checkpoint_folder(self):
        for overlay, objects in self.each_overlay():
            with self.subTest(overlay=overlay):
                for name in ("tecl-coordinator", "tecl-trainer"):
                    workload = find(objects, WORKLOADS[name], name)
                    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
                    mounts = {m["mountPath"]: m["name"] for m in container(workload)["volumeMounts"]}
                    self.assertIn("/var/lib/tecl/state/checkpoints", mounts, name)
                    claim = volumes[mounts["/var/lib/tecl/state/checkpoints"]]["persistentVolumeClaim"]
                    self.assertEqual(claim["claimName"], "tecl-checkpoints", name)

    def test_grpc_probes_resources_and_non_root(self):
        for overlay, objects in self.each_overlay():
            with self.subTest(overlay=overlay):
                for name, kind in WORKLOADS.items():
                    workload = find(objects, kind, name)
                    c = container(workload)
                    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
                    self.assertEqual(ports["grpc"], GRPC_PORTS[name], name)
                    self.assertEqual(ports["metrics"], 9090, name)
                    for probe in ("readinessProbe", "livenessProbe"):
                        self.assertEqual(c[probe].get("grpc", {}).get("port"), GRPC_PORTS[name],
                                         f"{name} {probe} must use the gRPC health service")
                    for bound in ("requests", "limits"):
                        for resource in ("cpu", "memory"):
                            self.assertIn(resource, c["resources"][bound], f"{name} {bound}.{resource}")
                    security = workload["spec"]["template"]["spec"]["securityContext"]
                    self.assertTrue(security["runAsNonRoot"], name)
                    self.assertFalse(c["securityContext"]["allowPrivilegeEscalation"], name)
                    self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"], name)

    def test_token_file_comes_from_the_secret_and_flags_from_the_config_map(self):
        for overlay, objects in self.each_overlay():
            with self.subTest(overlay=overlay):
                config = find_prefix(objects, "ConfigMap", "tecl-config")
                self.assertIsNotNone(config, "ConfigMap tecl-config")
                token_file = config["data"]["TECL_TOKEN_FILE"]
                self.assertEqual(config["data"]["TECL_METRICS_LISTEN"], "0.0.0.0:9090")
                secret = find_prefix(objects, "Secret", "tecl-auth")
                if ("Secret", "tecl-auth") in EXTERNAL[overlay]:
                    self.assertIsNone(secret, "the overlay expects an operator-made Secret")
                    secret_name = "tecl-auth"
                else:
                    self.assertIsNotNone(secret, "Secret tecl-auth")
                    self.assertIn("token", secret.get("data", {}))
                    secret_name = secret["metadata"]["name"]
                for name, kind in WORKLOADS.items():
                    workload = find(objects, kind, name)
                    c = container(workload)
                    self.assertIn({"configMapRef": {"name": config["metadata"]["name"]}}, c["envFrom"], name)
                    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
                    auth = [m for m in c["volumeMounts"]
                            if volumes[m["name"]].get("secret", {}).get("secretName") == secret_name]
                    self.assertEqual(len(auth), 1, f"{name} mounts the token Secret once")
                    self.assertTrue(auth[0].get("readOnly"), name)
                    self.assertTrue(token_file.startswith(auth[0]["mountPath"] + "/"),
                                    f"{name}: TECL_TOKEN_FILE {token_file} is not in the Secret's mount")

    def test_trainers_have_stable_dns_and_collective_interfaces(self):
        for overlay, objects in self.each_overlay():
            with self.subTest(overlay=overlay):
                trainer = find(objects, "StatefulSet", "tecl-trainer")
                service = find(objects, "Service", trainer["spec"]["serviceName"])
                self.assertEqual(service["spec"]["clusterIP"], "None")
                env = {e["name"]: e.get("value") for e in container(trainer)["env"]}
                self.assertEqual(env.get("GLOO_SOCKET_IFNAME"), "eth0")
                self.assertEqual(env.get("NCCL_SOCKET_IFNAME"), "eth0")

    def test_every_workload_has_a_disruption_budget_and_is_scraped(self):
        for overlay, objects in self.each_overlay():
            with self.subTest(overlay=overlay):
                budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
                monitor = find(objects, "ServiceMonitor", "tecl")
                monitored = next(e for e in monitor["spec"]["selector"]["matchExpressions"]
                                 if e["key"] == "app.kubernetes.io/name")["values"]
                self.assertEqual([e["port"] for e in monitor["spec"]["endpoints"]], ["metrics"])
                for name in WORKLOADS:
                    self.assertTrue(any(b["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}
                                        for b in budgets), f"no PodDisruptionBudget for {name}")
                    self.assertIn(name, monitored)
                    service = find(objects, "Service", name)
                    self.assertIn("metrics", [p["name"] for p in service["spec"]["ports"]])

    def test_alert_rules_are_installed_as_the_prometheus_rules(self):
        rules = []
        for path in sorted((lib.DEPLOY_DIR / "prometheus").glob("*.rules.yml")):
            rules.extend(yaml.safe_load(path.read_text())["groups"])
        for overlay, objects in self.each_overlay():
            with self.subTest(overlay=overlay):
                rule = find(objects, "PrometheusRule", "tecl")
                self.assertEqual(rule["spec"]["groups"], rules,
                                 "run python3 deploy/tools/render_prometheusrule.py")

    def test_gpu_overlay_requests_gpus_and_shares_read_only_videos(self):
        objects = self.rendered["gpu"][0]
        trainer = find(objects, "StatefulSet", "tecl-trainer")
        c = container(trainer)
        self.assertEqual(str(c["resources"]["limits"]["nvidia.com/gpu"]), "1")
        self.assertIn(":0.1.0-cuda", c["image"])
        self.assertIn(":0.1.0-cpu", container(find(objects, "Deployment", "tecl-coordinator"))["image"])
        self.assertEqual(find(objects, "PersistentVolumeClaim", "tecl-data")["spec"]["accessModes"],
                         ["ReadOnlyMany"])
        self.assertEqual(find(objects, "PersistentVolumeClaim", "tecl-checkpoints")["spec"]["accessModes"],
                         ["ReadWriteMany"])
        hpa = find(objects, "HorizontalPodAutoscaler", "tecl-dataloader")
        self.assertEqual(hpa["spec"]["behavior"]["scaleDown"]["selectPolicy"], "Disabled")

    def test_cpu_dev_overlay_has_no_gpus(self):
        objects = self.rendered["cpu-dev"][0]
        for o in objects:
            self.assertNotIn("nvidia.com/gpu", yaml.safe_dump(o), f"{o['kind']}/{o['metadata']['name']}")


if __name__ == "__main__":
    lib.main()
