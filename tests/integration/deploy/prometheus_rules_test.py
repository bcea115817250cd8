#!/usr/bin/env python3
"""deploy/prometheus: `promtool check rules` accepts the alert rules, `promtool test rules` passes,
every alert has a unit test case where it fires and one where it does not, and the cases decide:
replacing an alert's expression with one that always fires, or with one that never fires, makes
`promtool test rules` fail.
"""
import pathlib
import shutil
import tempfile
import unittest

import yaml

import deploy_testlib as lib

PROMTOOL = lib.require_tool("promtool", "scripts/setup installs the Debian package prometheus")
RULES_DIR = lib.DEPLOY_DIR / "prometheus"
RULE_FILES = sorted(RULES_DIR.glob("*.rules.yml"))
TEST_FILES = sorted(RULES_DIR.glob("*.rules.test.yml"))


def alerts(path):
    return [rule["alert"] for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "alert" in rule]


class RulesTest(unittest.TestCase):
    def test_files_present(self):
        self.assertEqual([p.name for p in RULE_FILES], ["tecl.rules.yml"])
        self.assertEqual([p.name for p in TEST_FILES], ["tecl.rules.test.yml"])

    def test_promtool_check_rules(self):
        result = lib.run([PROMTOOL, "check", "rules", *map(str, RULE_FILES)])
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("SUCCESS", result.stdout)

    def test_promtool_test_rules(self):
        result = lib.run([PROMTOOL, "test", "rules", *map(str, TEST_FILES)], cwd=RULES_DIR)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("SUCCESS", result.stdout)

    def test_every_alert_is_shown_to_fire_and_not_to_fire(self):
        firing, quiet = set(), set()
        for path in TEST_FILES:
            for case in yaml.safe_load(path.read_text())["tests"]:
                for check in case.get("alert_rule_test", []):
                    (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
        defined = {a for p in RULE_FILES for a in alerts(p)}
        self.assertEqual(sorted(defined - firing), [], "alerts without a firing case")
        self.assertEqual(sorted(defined - quiet), [], "alerts without a not-firing case")
        self.assertEqual(sorted((firing | quiet) - defined), [], "cases of alerts that do not exist")

    def test_cases_fail_when_an_alert_always_or_never_fires(self):
        with tempfile.TemporaryDirectory() as scratch:
            scratch = pathlib.Path(scratch)
            for path in TEST_FILES:
                shutil.copy(path, scratch / path.name)
            for rules_path in RULE_FILES:
                original = yaml.safe_load(rules_path.read_text())
                for alert in alerts(rules_path):
                    for mutation, expr in (("always fires", "vector(1)"), ("never fires", "vector(0) > 1")):
                        with self.subTest(alert=alert, mutation=mutation):
                            mutated = yaml.safe_load(rules_path.read_text())
                            for group in mutated["groups"]:
                                for rule in group["rules"]:
                                    if rule.get("alert") == alert:
                                        rule["expr"] = expr
                            (scratch / rules_path.name).write_text(yaml.safe_dump(mutated))
                            result = lib.run([PROMTOOL, "test", "rules", *[p.name for p in TEST_FILES]],
                                             cwd=scratch)
                            self.assertNotEqual(result.returncode, 0,
                                                f"{alert}: the unit tests pass although it {mutation}")
                            self.assertIn(f"alertname: {alert}", result.stdout + result.stderr)
                (scratch / rules_path.name).write_text(yaml.safe_dump(original))


if __name__ == "__main__":
    lib.main()
