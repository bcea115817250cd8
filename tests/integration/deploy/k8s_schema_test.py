#!/usr/bin/env python3
"""Every object of every rendered overlay validates against the Kubernetes schemas offline
(kubernetes-models, @kubernetes-models/prometheus-operator for ServiceMonitor and
PrometheusRule, @kubernetes-models/cert-manager for Certificate and Issuer), has no unknown fields, and references only objects that exist
(deploy/tools/validate-manifests.mjs). A file of deliberately broken objects shows that the
validator reports each kind of problem.
"""
import unittest

import deploy_testlib as lib
from k8s_render_test import EXTERNAL

lib.require_tool("kubectl", "scripts/setup installs kubernetes-client")
NODE = lib.require_tool("node", "scripts/setup installs nodejs")
lib.require_tool("openssl", "apt-get install openssl (make_dev_secrets.py makes the cpu-dev certificates)")
MODULES = ["kubernetes-models", "@kubernetes-models/prometheus-operator", "@kubernetes-models/cert-manager"]
if not all((lib.DEPLOY_DIR / "node_modules" / module).is_dir() for module in MODULES):
    lib.skip(f"deploy/node_modules lacks one of {MODULES}: run `npm ci --prefix deploy` (scripts/setup does, "
             "from deploy/package-lock.json, when the npm registry is reachable)")
VALIDATOR = str(lib.DEPLOY_DIR / "tools" / "validate-manifests.mjs")


def validate(text, external=()):
    arguments = [NODE, VALIDATOR, "-"]
    for kind, name in sorted(external):
        arguments += ["--external", f"{kind}/{name}"]
    return lib.run(arguments, input_text=text)


class SchemaTest(unittest.TestCase):
    def test_every_overlay_validates(self):
        for overlay in lib.overlays():
            with self.subTest(overlay=overlay):
                objects, text, _ = lib.render_overlay(overlay)
                result = validate(text, EXTERNAL[overlay])
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
                validated = [l for l in result.stdout.splitlines() if l.startswith("ok   ")]
                self.assertEqual(len(validated), len(objects), result.stdout)
                self.assertIn(f"{len(objects)} objects, 0 with schema problems, 0 reference problems",
                              result.stdout)

    def test_operator_made_secret_is_reported_when_not_declared_external(self):
        _, text, _ = lib.render_overlay("gpu")
        result = validate(text)
        self.assertEqual(result.returncode, 1)
        for workload, volume, secret in [("Deployment/tecl-coordinator", "auth", "tecl-auth"),
                                         ("Deployment/tecl-dataloader", "token", "tecl-dataloader-token"),
                                         ("StatefulSet/tecl-trainer", "token", "tecl-trainer-token")]:
            self.assertIn(f"FAIL references: {workload}: volume {volume}: Secret {secret} not found", result.stdout)
        # The certificates' Secrets come from the cert-manager component's Certificates.
        self.assertNotIn("-tls not found", result.stdout)

    def test_broken_objects_are_reported(self):
        result = validate((lib.TESTDATA_DIR / "broken-manifests.yaml").read_text())
        self.assertEqual(result.returncode, 1, result.stdout)
        for expected in [
            "FAIL apps/v1/Deployment/broken: schema: data/spec/replicas must be integer",
            "FAIL apps/v1/Deployment/broken: unknown field spec.template.spec.containers[0].readinesProbe "
            "(did you mean readinessProbe?)",
            "FAIL monitoring.coreos.com/v1/ServiceMonitor/broken: unknown field spec.endpoints[0].intervall "
            "(did you mean interval?)",
            "FAIL example.com/v1/Gadget/unknown-kind: no schema for apiVersion example.com/v1 kind Gadget",
            "FAIL references: Deployment/broken: spec.selector does not match the pod template's labels",
            "FAIL references: Deployment/broken: volume state: PersistentVolumeClaim missing-claim not found",
            "FAIL references: Deployment/broken container main: envFrom ConfigMap missing-config not found",
            "FAIL references: Deployment/broken container main: livenessProbe port 7071 is not one of the "
            "container's ports",
            "FAIL references: Service/broken: selector {\"app.kubernetes.io/name\":\"nothing-has-this\"} "
            "matches no pod template",
            "FAIL references: ServiceMonitor/broken: selector matches no Service",
            "FAIL networking.k8s.io/v1/NetworkPolicy/broken: unknown field spec.ingress[0].ports[0].protocl "
            "(did you mean protocol?)",
            "FAIL cert-manager.io/v1/Certificate/broken: schema: data/spec/usages/3 must be equal to one of "
            "the allowed values",
            "FAIL references: NetworkPolicy/broken: podSelector matches no pod template",
            "FAIL v1/Secret/broken: schema: data/data/bad must match format \"byte\"",
            "FAIL references: Certificate/broken: issuerRef Issuer missing-issuer not found",
            "FAIL references: Issuer/broken: ca.secretName: Secret missing-ca not found",
        ]:
            self.assertIn(expected, result.stdout)
        # A Secret that a Certificate provides is not missing.
        self.assertNotIn("broken-tls", result.stdout)
        self.assertNotIn("data/data/wrapped", result.stdout)
        self.assertIn("ok   cert-manager.io/v1/Issuer/broken", result.stdout)


if __name__ == "__main__":
    lib.main()
