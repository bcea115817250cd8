#!/usr/bin/env python3
"""Every kustomize overlay under deploy/k8s/overlays renders, and the rendered objects keep the
deployment's design: a single Recreate coordinator on a ReadWriteOnce volume, health probes on the
metrics port, resource requests and limits, a headless Service for the trainers with the collective
interface variables, budgets, metrics scraping, (gpu) GPU requests, and security by default: no
literal secret committed, per-role credentials (the coordinator's --auth_file, each worker's
--token_file) from Secrets, mutual TLS with a certificate per component whose Common Name is
`<role>:<name>` and whose SANs cover the names clients dial, no service account token in any pod,
and NetworkPolicies that deny ingress by default and admit exactly each component's ports from its
callers. deploy/tools/make_dev_secrets.py (the cpu-dev credentials) is checked here too.
"""
import base64
import json
import os
import pathlib
import re
import stat
import sys
import tempfile
import unittest

import yaml

import deploy_testlib as lib

lib.require_tool("kubectl", "scripts/setup installs kubernetes-client; kubectl >= 1.21 has kustomize v4+")
OPENSSL = lib.require_tool("openssl", "apt-get install openssl (make_dev_secrets.py makes the cpu-dev certificates)")

# Objects every overlay must get from elsewhere (created by the operator), by overlay.
EXTERNAL = {
    "cpu-dev": set(),
    "gpu": {("Secret", "tecl-auth"), ("Secret", "tecl-trainer-token"), ("Secret", "tecl-dataloader-token")},
}
WORKLOADS = {"tecl-coordinator": "Deployment", "tecl-dataloader": "Deployment",
             "tecl-trainer": "StatefulSet"}
GRPC_PORTS = {"tecl-coordinator": 7070, "tecl-dataloader": 7080, "tecl-trainer": 7090}
POD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod")
# Credential flag of each component: flag -> (Secret, key) it must read.
CREDENTIALS = {
    "tecl-coordinator": {"--auth_file": ("tecl-auth", "auth_file")},
    "tecl-dataloader": {"--token_file": ("tecl-dataloader-token", "token")},
    "tecl-trainer": {"--token_file": ("tecl-trainer-token", "token")},
}
# Certificate Secret and Common Name (`<role>:<name>`, docs/security.md) of each component.
CERTIFICATES = {
    "tecl-coordinator": ("tecl-coordinator-tls", "coordinator:tecl-coordinator"),
    "tecl-dataloader": ("tecl-dataloader-tls", "dataloader:tecl-dataloader"),
    "tecl-trainer": ("tecl-trainer-tls", "trainer:tecl-worker"),
}
TLS_FLAGS = {"--tls_cert": "tls.crt", "--tls_key": "tls.key", "--tls_ca": "ca.crt"}
# Sample values for the downward-API variables in advertised addresses.
POD_NAMES = {"tecl-dataloader": "tecl-dataloader-5d8f9c7b6d-x2k4p", "tecl-trainer": "tecl-trainer-3"}
GENERATED_SUFFIX = re.compile(r"-[a-z0-9]{10}$")  # kustomize's content hash on generated names

# NetworkPolicy peers (docs/operations.md, "Security").
PROMETHEUS = {"namespaceSelector": {"matchLabels": {"tecl.io/prometheus": "true"}},
              "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
CLIENTS_HERE = {"podSelector": {"matchLabels": {"tecl.io/client": "true"}}}
CLIENTS_ELSEWHERE = {"namespaceSelector": {"matchLabels": {"tecl.io/client": "true"}},
                     "podSelector": {"matchLabels": {"tecl.io/client": "true"}}}


def pods_of(name):
    return {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}}


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


def pod_template(o):
    if o["kind"] == "CronJob":
        return o["spec"]["jobTemplate"]["spec"]["template"]
    return o if o["kind"] == "Pod" else o["spec"]["template"]


def flags(c):
    """{--flag: value} of a container's `--flag=value` arguments."""
    return dict(a.split("=", 1) for a in c.get("args", []) if a.startswith("--") and "=" in a)


def mounted_secret_file(workload, path):
    """(Secret name, key) of the file `path` as mounted in the workload's container."""
    c = container(workload)
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    for mount in c.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix) and "secret" in volumes[mount["name"]]:
            assert mount.get("readOnly"), f"{mount['name']} must be mounted read-only"
            secret = volumes[mount["name"]]["secret"]
            relative = path[len(prefix):]
            items = {i["path"]: i["key"] for i in secret.get("items", [])}
            return secret["secretName"], items.get(relative, relative)
    raise AssertionError(f"{workload['metadata']['name']}: {path} is in no mounted Secret")


def base_name(name):
    return GENERATED_SUFFIX.sub("", name)


def openssl(*arguments, pem=None):
    result = lib.run([OPENSSL, *arguments], input_text=pem)
    assert result.returncode == 0, f"openssl {arguments}: {result.stderr}"
    return result.stdout


def wildcard_match(pattern, name):
    """RFC 6125 matching as gRPC does it: `*` only as the whole leftmost label, one label."""
    if not pattern.startswith("*."):
        return pattern.lower() == name.lower()
    head, _, rest = name.partition(".")
    return bool(head) and rest.lower() == pattern[2:].lower()


def dialed_names(objects, name):
    """Host names clients dial to reach `name` inside the cluster."""
    config = find_prefix(objects, "ConfigMap", "tecl-config")["data"]
    c = container(find(objects, WORKLOADS[name], name))
    if name == "tecl-coordinator":
        return {config["TECL_COORDINATOR"].rsplit(":", 1)[0], flags(c)["--advertise_address"].rsplit(":", 1)[0]}
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    address = env["TECL_ADVERTISE_ADDRESS"].replace("$(POD_NAME)", POD_NAMES[name]).replace(
        "$(POD_NAMESPACE)", "tecl")
    assert "$(" not in address, address
    return {address.rsplit(":", 1)[0]}


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()) and \
        not selector.get("matchExpressions")


def admitted(objects, labels):
    """{(protocol, port or "all", peer as JSON)} that the NetworkPolicies selecting pods with
    `labels` admit; None when no policy isolates them for ingress."""
    rules = set()
    isolated = False
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
        if not selects(policy["spec"]["podSelector"], labels) or "Ingress" not in policy["spec"].get("policyTypes", []):
            continue
        isolated = True
        for rule in policy["spec"].get("ingress") or []:
            peers = rule.get("from") or [{"anyone": True}]
            ports = rule.get("ports") or [{"protocol": "any"}]
            for peer in peers:
                for port in ports:
                    rules.add((port.get("protocol", "TCP"), port.get("port", "all"),
                               json.dumps(peer, sort_keys=True)))
    return rules if isolated else None


def rule_set(*entries):
    return {(protocol, port, json.dumps(peer, sort_keys=True)) for protocol, port, peer in entries}


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

    def test_health_probes_resources_and_non_root(self):
        for overlay, objects in self.each_overlay():
            with self.subTest(overlay=overlay):
                for name, kind in WORKLOADS.items():
                    workload = find(objects, kind, name)
                    c = container(workload)
                    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
                    self.assertEqual(ports["grpc"], GRPC_PORTS[name], name)
                    self.assertEqual(ports["metrics"], 9090, name)
                    # The gRPC port needs mutual TLS, which kubelet's grpc probes cannot do.
                    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                        if probe == "startupProbe" and probe not in c:
                            continue
                        self.assertEqual(c[probe].get("httpGet"), {"path": "/healthz", "port": "metrics"},
                                         f"{name} {probe} must GET /healthz on the metrics port")
                    self.assertIn("startupProbe", find(objects, "Deployment", "tecl-coordinator")
                                  ["spec"]["template"]["spec"]["containers"][0])
                    for bound in ("requests", "limits"):
                        for resource in ("cpu", "memory"):
                            self.assertIn(resource, c["resources"][bound], f"{name} {bound}.{resource}")
                    security = workload["spec"]["template"]["spec"]["securityContext"]
                    self.assertTrue(security["runAsNonRoot"], name)
                    self.assertFalse(c["securityContext"]["allowPrivilegeEscalation"], name)
                    self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"], name)

    def test_flags_come_from_the_config_map(self):
        for overlay, objects in self.each_overlay():
            with self.subTest(overlay=overlay):
                config = find_prefix(objects, "ConfigMap", "tecl-config")
                self.assertIsNotNone(config, "ConfigMap tecl-config")
                self.assertEqual(config["data"]["TECL_METRICS_LISTEN"], "0.0.0.0:9090")
                # Credentials are per component, never shared through the ConfigMap.
                self.assertEqual([k for k in config["data"] if re.search("TOKEN|AUTH|TLS|INSECURE", k)], [])
                for name, kind in WORKLOADS.items():
                    c = container(find(objects, kind, name))
                    self.assertIn({"configMapRef": {"name": config["metadata"]["name"]}}, c["envFrom"], name)

    # --- security by default ----------------------------------------------------------------

    def secret_provider(self, overlay, objects, secret_name):
        """The rendered Secret or cert-manager Certificate that provides `secret_name`, or None
        when the overlay expects the operator to create it (EXTERNAL)."""
        secrets = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == secret_name]
        certificates = [o for o in objects if o["kind"] == "Certificate" and o["spec"]["secretName"] == secret_name]
        self.assertLessEqual(len(secrets) + len(certificates), 1, f"{secret_name} is provided twice")
        if secrets or certificates:
            self.assertNotIn(("Secret", base_name(secret_name)), EXTERNAL[overlay],
                             f"{overlay}: {secret_name} is rendered although listed as external")
            return (secrets or certificates)[0]
        self.assertIn(("Secret", secret_name), EXTERNAL[overlay],
                      f"{overlay}: nothing provides Secret {secret_name}")
        return None

    def test_no_literal_secret_is_committed(self):
        """Secrets come from secretGenerators reading files that git ignores, or from outside."""
        manifests = [p for p in (lib.DEPLOY_DIR / "k8s").rglob("*.yaml") if "secrets" not in p.parts]
        generated = set()
        for path in manifests:
            for document in yaml.safe_load_all(path.read_text()):
                if not document:
                    continue
                self.assertNotEqual(document.get("kind"), "Secret", f"{path}: a committed Secret")
                if document.get("kind") not in ("Kustomization", "Component"):
                    continue
                for generator in document.get("secretGenerator") or []:
                    where = f"{path.relative_to(lib.DEPLOY_DIR)}: secretGenerator {generator['name']}"
                    self.assertEqual(sorted(set(generator) - {"name", "type", "files", "options"}), [],
                                     f"{where}: only `files:` (no literals, envs)")
                    self.assertTrue(generator.get("files"), where)
                    generated.add(generator["name"])
                for _, _, file in lib.secret_generator_files(document):
                    self.assert_git_ignored(path.parent / file)
        for overlay, objects in self.each_overlay():
            with self.subTest(overlay=overlay):
                text = self.rendered[overlay][1]
                self.assertNotIn("tecl-dev-token-not-secret", text)
                for o in objects:
                    if o["kind"] == "Secret":
                        self.assertIn(base_name(o["metadata"]["name"]), generated,
                                      f"Secret {o['metadata']['name']} is not from a secretGenerator")
                        self.assertRegex(o["metadata"]["name"], GENERATED_SUFFIX)

    def assert_git_ignored(self, path):
        relative = os.path.relpath(path, lib.SOURCE_DIR)
        inside = lib.run(["git", "-C", str(lib.SOURCE_DIR), "rev-parse", "--is-inside-work-tree"])
        if inside.returncode != 0 or inside.stdout.strip() != "true":
            return  # not a git checkout (an exported tree): nothing can be committed from it
        self.assertEqual(lib.run(["git", "-C", str(lib.SOURCE_DIR), "check-ignore", "-q", "--no-index",
                                  relative]).returncode, 0, f"{relative} must be git-ignored")
        self.assertEqual(lib.run(["git", "-C", str(lib.SOURCE_DIR), "ls-files", "--", relative]).stdout, "",
                         f"{relative} is committed")

    def test_no_pod_gets_a_service_account_token(self):
        for overlay, objects in self.each_overlay():
            with self.subTest(overlay=overlay):
                pods = [o for o in objects if o["kind"] in POD_KINDS]
                self.assertGreaterEqual(len(pods), len(WORKLOADS))
                for o in pods:
                    self.assertIs(pod_template(o)["spec"].get("automountServiceAccountToken"), False,
                                  f"{o['kind']}/{o['metadata']['name']}")

    def test_coordinator_gets_the_auth_file_and_workers_their_role_tokens(self):
        for overlay, objects in self.each_overlay():
            with self.subTest(overlay=overlay):
                for name, credentials in CREDENTIALS.items():
                    workload = find(objects, WORKLOADS[name], name)
                    args = flags(container(workload))
                    self.assertNotIn("--insecure", container(workload).get("args", []), name)
                    self.assertEqual(sorted(f for f in args if f in ("--auth_file", "--token_file")),
                                     sorted(credentials), name)
                    for flag, (secret, key) in credentials.items():
                        mounted, mounted_key = mounted_secret_file(workload, args[flag])
                        self.assertEqual((base_name(mounted), mounted_key), (secret, key), f"{name} {flag}")
                        provider = self.secret_provider(overlay, objects, mounted)
                        if provider is not None:
                            self.assertEqual(list(provider["data"]), [key], mounted)
                            self.check_credential(name, base64.b64decode(provider["data"][key]).decode())

    def check_credential(self, name, text):
        if name == "tecl-coordinator":
            lines = [l.split() for l in text.splitlines() if l.strip() and not l.startswith("#")]
            self.assertEqual(sorted(l[0] for l in lines), ["dataloader", "trainer", "user"], text)
            for role, principal, token in lines:
                self.assertRegex(token, r"^[0-9a-f]{64}$", role)
            self.assertEqual(len({l[2] for l in lines}), 3, "one token per role")
        else:
            self.assertRegex(text.strip(), r"^[0-9a-f]{64}$")

    def test_every_component_uses_mutual_tls_with_its_certificate(self):
        for overlay, objects in self.each_overlay():
            with self.subTest(overlay=overlay):
                for name, (secret, common_name) in CERTIFICATES.items():
                    workload = find(objects, WORKLOADS[name], name)
                    args = flags(container(workload))
                    mounted = set()
                    for flag, key in TLS_FLAGS.items():
                        self.assertIn(flag, args, f"{name}: {flag}")
                        mounted.add(mounted_secret_file(workload, args[flag]))
                    self.assertEqual({(base_name(s), k) for s, k in mounted},
                                     {(secret, k) for k in TLS_FLAGS.values()}, name)
                    secret_name = next(iter(mounted))[0]
                    provider = self.secret_provider(overlay, objects, secret_name)
                    self.assertIsNotNone(provider, f"{overlay}: the overlay must provide {secret}")
                    if provider["kind"] == "Certificate":
                        self.check_certificate_resource(objects, provider, common_name, dialed_names(objects, name))
                    else:
                        self.check_certificate_secret(provider, common_name, dialed_names(objects, name))

    def check_certificate_resource(self, objects, certificate, common_name, dialed):
        spec = certificate["spec"]
        self.assertEqual(spec["commonName"], common_name)
        self.assertTrue({"server auth", "client auth"} <= set(spec["usages"]), spec["usages"])
        for host in dialed:
            self.assertTrue(any(wildcard_match(n, host) for n in spec["dnsNames"]),
                            f"{spec['secretName']}: {host} is not among {spec['dnsNames']}")
        issuer = find(objects, "Issuer", spec["issuerRef"]["name"])
        ca = next(o for o in objects if o["kind"] == "Certificate"
                  and o["spec"]["secretName"] == issuer["spec"]["ca"]["secretName"])
        self.assertTrue(ca["spec"]["isCA"])

    def check_certificate_secret(self, secret, common_name, dialed):
        self.assertEqual(secret["type"], "kubernetes.io/tls")
        self.assertEqual(sorted(secret["data"]), ["ca.crt", "tls.crt", "tls.key"])
        pem = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        subject = openssl("x509", "-noout", "-subject", "-nameopt", "RFC2253", pem=pem["tls.crt"]).strip()
        self.assertEqual(subject, f"subject=CN={common_name}")
        usages = openssl("x509", "-noout", "-ext", "extendedKeyUsage", pem=pem["tls.crt"])
        self.assertIn("TLS Web Server Authentication", usages)
        self.assertIn("TLS Web Client Authentication", usages)
        with tempfile.NamedTemporaryFile("w", suffix=".crt") as ca:
            ca.write(pem["ca.crt"])
            ca.flush()
            self.assertIn("OK", openssl("verify", "-CAfile", ca.name, pem=pem["tls.crt"]))
        for host in dialed:
            self.assertIn("does match certificate",
                          openssl("x509", "-noout", "-checkhost", host, pem=pem["tls.crt"]), host)

    def test_dataloaders_advertise_a_dns_name_of_their_headless_service(self):
        for overlay, objects in self.each_overlay():
            with self.subTest(overlay=overlay):
                deployment = find(objects, "Deployment", "tecl-dataloader")
                pod = deployment["spec"]["template"]
                service = find(objects, "Service", pod["spec"]["subdomain"])
                self.assertEqual(service["spec"]["clusterIP"], "None")
                self.assertTrue(service["spec"].get("publishNotReadyAddresses"))
                self.assertTrue(selects({"matchLabels": service["spec"]["selector"]}, pod["metadata"]["labels"]))
                env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
                self.assertEqual(env["TECL_ADVERTISE_ADDRESS"],
                                 f"$(POD_NAME).{service['metadata']['name']}.$(POD_NAMESPACE).svc:7080")

    def test_network_policies_admit_exactly_each_components_ports(self):
        for overlay, objects in self.each_overlay():
            with self.subTest(overlay=overlay):
                deny = [o for o in objects if o["kind"] == "NetworkPolicy" and o["spec"]["podSelector"] == {}]
                self.assertEqual(len(deny), 1, "one default-deny policy for the namespace")
                self.assertEqual(deny[0]["spec"]["policyTypes"], ["Ingress"])
                self.assertFalse(deny[0]["spec"].get("ingress"), "the default-deny policy admits nothing")
                ports = {name: {p["name"]: p["containerPort"] for p in container(find(objects, kind, name))["ports"]}
                         for name, kind in WORKLOADS.items()}
                expected = {
                    "tecl-coordinator": rule_set(
                        *[("TCP", ports["tecl-coordinator"]["grpc"], peer)
                          for peer in (pods_of("tecl-trainer"), pods_of("tecl-dataloader"),
                                       CLIENTS_HERE, CLIENTS_ELSEWHERE)],
                        ("TCP", ports["tecl-coordinator"]["metrics"], PROMETHEUS)),
                    "tecl-dataloader": rule_set(
                        ("TCP", ports["tecl-dataloader"]["grpc"], pods_of("tecl-trainer")),
                        ("TCP", ports["tecl-dataloader"]["metrics"], PROMETHEUS)),
                    # Gloo and NCCL listen on ephemeral ports: every TCP port, from trainers only.
                    "tecl-trainer": rule_set(
                        ("TCP", "all", pods_of("tecl-trainer")),
                        ("TCP", ports["tecl-trainer"]["metrics"], PROMETHEUS)),
                }
                for o in (o for o in objects if o["kind"] in POD_KINDS):
                    name = o["metadata"]["name"]
                    template = pod_template(o)
                    self.assertFalse(template["spec"].get("hostNetwork"),
                                     f"{name}: NetworkPolicies do not apply to host-network pods")
                    self.assertEqual(admitted(objects, template["metadata"]["labels"]), expected.get(name, set()),
                                     f"{o['kind']}/{name}")

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


class DevSecretsTest(unittest.TestCase):
    """deploy/tools/make_dev_secrets.py: fresh random credentials, private files, certificates
    with the cert-manager component's names, kept unless --force."""

    def make(self, out, *extra):
        result = lib.run([sys.executable, str(lib.DEPLOY_DIR / "tools" / "make_dev_secrets.py"),
                          "--out", str(out), *extra])
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return result.stdout

    def test_random_private_and_kept(self):
        with tempfile.TemporaryDirectory() as scratch:
            first, second = pathlib.Path(scratch) / "a", pathlib.Path(scratch) / "b"
            self.assertIn("TECL_TLS_SERVER_NAME=tecl-coordinator", self.make(first))
            self.make(second)
            self.assertEqual(stat.S_IMODE(first.stat().st_mode), 0o700)
            files = sorted(p.name for p in first.iterdir())
            self.assertEqual(files, sorted(["auth_file", "ca.crt", "ca.key", "trainer.token", "dataloader.token",
                                            "user.token"] + [f"{c}.{e}" for c in ("coordinator", "dataloader",
                                                                                  "trainer", "user")
                                                             for e in ("crt", "key")]))
            for name in files:
                self.assertEqual(stat.S_IMODE((first / name).stat().st_mode), 0o600, name)
                if name.endswith((".token", ".key")):
                    self.assertNotEqual((first / name).read_text(), (second / name).read_text(), name)
            tokens = {}
            for line in (first / "auth_file").read_text().splitlines():
                if line and not line.startswith("#"):
                    role, principal, token = line.split()
                    tokens[role] = token
            for role in ("trainer", "dataloader", "user"):
                self.assertEqual((first / f"{role}.token").read_text().strip(), tokens[role], role)
            user = openssl("x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", str(first / "user.crt"))
            self.assertEqual(user.strip(), "subject=CN=user:admin")
            self.assertIn("OK", openssl("verify", "-CAfile", str(first / "ca.crt"), str(first / "user.crt")))
            before = (first / "auth_file").read_text()
            self.assertIn("kept", self.make(first))
            self.assertEqual((first / "auth_file").read_text(), before)
            self.make(first, "--force")
            self.assertNotEqual((first / "auth_file").read_text(), before)

    def test_names_follow_the_namespace(self):
        with tempfile.TemporaryDirectory() as scratch:
            out = pathlib.Path(scratch)
            self.make(out, "--namespace", "ml")
            self.assertIn("does match", openssl("x509", "-noout", "-checkhost", "tecl-coordinator.ml.svc",
                                                "-in", str(out / "coordinator.crt")))
            self.assertIn("does match", openssl("x509", "-noout", "-checkhost", "p-1.tecl-dataloader.ml.svc",
                                                "-in", str(out / "dataloader.crt")))
            self.assertIn("NOT match", openssl("x509", "-noout", "-checkhost", "tecl-coordinator.tecl.svc",
                                               "-in", str(out / "coordinator.crt")))


if __name__ == "__main__":
    lib.main()
