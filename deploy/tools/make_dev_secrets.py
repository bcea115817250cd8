#!/usr/bin/env python3
"""Writes the credentials of a development cluster (overlays/cpu-dev) into a git-ignored folder:

    python3 deploy/tools/make_dev_secrets.py            # deploy/k8s/overlays/cpu-dev/secrets/
    python3 deploy/tools/make_dev_secrets.py --force    # replace them all (rotation)
    python3 deploy/tools/make_dev_secrets.py --out DIR [--namespace NS]

The overlay's secretGenerator reads the files (nothing secret is committed):

    auth_file                     the coordinator's --auth_file: `<role> <name> <token>` lines for
                                  the trainers, the dataloaders and teclctl (user admin)
    trainer.token, dataloader.token, user.token
                                  each role's token (256 random bits, hex)
    ca.crt, ca.key                a CA made for this cluster (ca.key never leaves this folder)
    coordinator.{crt,key}, dataloader.{crt,key}, trainer.{crt,key}, user.{crt,key}
                                  certificates signed by that CA, with the Common Names and DNS
                                  names of components/cert-manager/certificates.yaml (the SANs'
                                  namespace label `tecl` replaced by --namespace)

The folder is mode 0700 and every file 0600. Needs the openssl command (1.1.1 or newer). Existing
files are kept unless --force (or one of them is missing: then all are made again, so that the
tokens in auth_file and the certificates match). What it prints tells how to point teclctl at
them.
"""
import argparse
import os
import pathlib
import secrets
import shutil
import subprocess
import sys
import tempfile

import yaml

DEPLOY_DIR = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_OUT = DEPLOY_DIR / "k8s" / "overlays" / "cpu-dev" / "secrets"
CERTIFICATES = DEPLOY_DIR / "k8s" / "components" / "cert-manager" / "certificates.yaml"
BASE_NAMESPACE = "tecl"

# (role, name in auth_file, token file); the names match the certificates' Common Names.
TOKENS = [("trainer", "tecl-worker", "trainer.token"),
          ("dataloader", "tecl-dataloader", "dataloader.token"),
          ("user", "admin", "user.token")]
# Certificate object in certificates.yaml -> file stem here.
CERTIFICATE_FILES = {"tecl-coordinator": "coordinator", "tecl-dataloader": "dataloader",
                     "tecl-trainer": "trainer", "tecl-user": "user"}
CA_DAYS = 825
LEAF_DAYS = 365
_USAGES = {"server auth": "serverAuth", "client auth": "clientAuth"}


def certificate_specs(namespace=BASE_NAMESPACE, path=CERTIFICATES):
    """{file stem: (common name, [DNS names], [extended key usages])} from the cert-manager
    component, for `namespace`."""
    specs = {}
    for document in yaml.safe_load_all(path.read_text()):
        if not document or document.get("kind") != "Certificate":
            continue
        stem = CERTIFICATE_FILES.get(document["metadata"]["name"])
        if stem is None:
            continue
        spec = document["spec"]
        names = [".".join(namespace if label == BASE_NAMESPACE else label for label in name.split("."))
                 for name in spec.get("dnsNames", [])]
        usages = [_USAGES[u] for u in spec.get("usages", []) if u in _USAGES]
        specs[stem] = (spec["commonName"], names, usages)
    missing = sorted(set(CERTIFICATE_FILES.values()) - set(specs))
    if missing:
        raise SystemExit(f"{path}: no Certificate for {missing}")
    return specs


def expected_files():
    names = ["auth_file", "ca.crt", "ca.key"] + [t[2] for t in TOKENS]
    for stem in CERTIFICATE_FILES.values():
        names += [f"{stem}.crt", f"{stem}.key"]
    return sorted(names)


def _openssl(*arguments, cwd):
    result = subprocess.run(["openssl", *arguments], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"openssl {' '.join(arguments)} failed:\n{result.stderr}")


def _write(path, text):
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def make(out, namespace):
    if shutil.which("openssl") is None:
        raise SystemExit("make_dev_secrets: the openssl command is needed (apt-get install openssl)")
    specs = certificate_specs(namespace)
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    old_umask = os.umask(0o077)
    try:
        with tempfile.TemporaryDirectory(dir=out) as scratch:
            work = pathlib.Path(scratch)
            _openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                     "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", str(CA_DAYS), "-sha256",
                     "-subj", f"/CN=tecl-dev-ca {namespace}",
                     "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=work)
            for stem, (common_name, dns_names, usages) in sorted(specs.items()):
                extensions = ["[leaf]", "basicConstraints=critical,CA:FALSE",
                              "keyUsage=critical,digitalSignature",
                              f"extendedKeyUsage={','.join(usages)}",
                              "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid"]
                if dns_names:
                    extensions.append("subjectAltName=" + ",".join(f"DNS:{n}" for n in dns_names))
                (work / f"{stem}.ext").write_text("\n".join(extensions) + "\n")
                _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                         "-nodes", "-keyout", f"{stem}.key", "-out", f"{stem}.csr",
                         "-subj", f"/CN={common_name}", cwd=work)
                _openssl("x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                         "-set_serial", "0x" + secrets.token_hex(16), "-days", str(LEAF_DAYS), "-sha256",
                         "-extfile", f"{stem}.ext", "-extensions", "leaf", "-out", f"{stem}.crt", cwd=work)
            tokens = {file: secrets.token_hex(32) for _, _, file in TOKENS}
            lines = ["# <role> <name> <token>: the coordinator's --auth_file (docs/security.md).",
                     "# Written by deploy/tools/make_dev_secrets.py for a development cluster."]
            lines += [f"{role} {name} {tokens[file]}" for role, name, file in TOKENS]
            _write(work / "auth_file", "\n".join(lines) + "\n")
            for file, token in tokens.items():
                _write(work / file, token + "\n")
            for name in expected_files():
                os.chmod(work / name, 0o600)
                os.replace(work / name, out / name)
    finally:
        os.umask(old_umask)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT,
                        help=f"folder to write (default {DEFAULT_OUT.relative_to(DEPLOY_DIR.parent)})")
    parser.add_argument("--namespace", default=BASE_NAMESPACE,
                        help="namespace in the certificates' DNS names (default tecl)")
    parser.add_argument("--force", action="store_true", help="replace existing files (rotation)")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    present = [name for name in expected_files() if (out / name).is_file()]
    if args.force or len(present) != len(expected_files()):
        make(out, args.namespace)
        action = "wrote"
    else:
        action = "kept (--force to replace)"
    if not args.quiet:
        print(f"make_dev_secrets: {action} {out}: {' '.join(expected_files())}")
        print("teclctl through `kubectl -n tecl port-forward svc/tecl-coordinator 7070:7070`:")
        print(f"  export TECL_COORDINATOR=localhost:7070 TECL_TOKEN_FILE={out}/user.token \\\n"
              f"    TECL_TLS_CA={out}/ca.crt TECL_TLS_CERT={out}/user.crt TECL_TLS_KEY={out}/user.key \\\n"
              f"    TECL_TLS_SERVER_NAME=tecl-coordinator")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
