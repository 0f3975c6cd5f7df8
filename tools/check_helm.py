#!/usr/bin/env python3
"""Validates the Helm chart without a cluster: `helm lint --strict` and render (helm-python-sdk),
the rendered manifests against the Kubernetes API schemas (kubernetes-validate), and checkov's
Kubernetes checks (skips, each with its reason, in helm/.checkov.yaml).

Renders two value sets: the defaults, and every optional feature on (TLS, OTEL, HPA, headless
Service, ServiceMonitor, NetworkPolicy, a Secret, a PVC, Redis and PostgreSQL).

    python3 tools/check_helm.py [--kube-version 1.33.0] [--skip-checkov]
"""

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "phonecheck"
# Custom resources that the Kubernetes schemas do not describe.
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

EVERYTHING = {
    "replicaCount": 3,
    "existingSecret": "phonecheck-vendors",
    "tls": {"enabled": True, "secretName": "phonecheck-tls", "clientCA": "ca.crt"},
    "otel": {"endpoint": "http://otel-collector.observability:4317", "resourceAttributes": "deployment.environment=prod"},
    "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12},
    "service": {"headless": True},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "networkPolicy": {"enabled": True, "allowedNamespaceLabels": {"team": "growth"}},
    "persistence": {"existingClaim": "phonecheck-data"},
    "redis": {"url": "redis://redis-master.data:6379/0", "passwordSecretKey": "PHONECHECK_REDIS_PASSWORD"},
    "postgres": {"enabled": True},
}


def fail(message: str) -> None:
    print(f"FAIL: {message}")
    sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kube-version", default="1.33.0")
    parser.add_argument("--skip-checkov", action="store_true")
    args = parser.parse_args()

    for name, values in [("defaults", None), ("everything", EVERYTHING)]:
        report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{args.kube_version}")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        if problems:
            fail(f"helm lint ({name}): {problems}")
        print(f"helm lint --strict ({name}): ok")

    # Values the schema must refuse.
    chart = helm.Chart.load(str(CHART))
    for bad in [{"grpcPort": 0}, {"logFormat": "xml"}, {"nope": 1}, {"redis": {"url": "http://x"}},
                {"postgres": {"jobLease": "soon"}}]:
        try:
            chart.render(bad, name="phonecheck", namespace="default")
        except helm.HelmError:
            continue
        fail(f"values.schema.json accepted {bad}")
    print("values.schema.json refuses bad values: ok")

    out = pathlib.Path(tempfile.mkdtemp(prefix="phonecheck-chart-"))
    for name, values in [("defaults", None), ("everything", EVERYTHING)]:
        rendered = chart.render(values, name="phonecheck", namespace="phonecheck", is_install=True)
        documents = []
        for path, text in sorted(rendered.items()):
            if not path.endswith(".yaml"):
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    documents.append(doc)
        kinds = sorted({d["kind"] for d in documents})
        for doc in documents:
            if (doc["apiVersion"], doc["kind"]) in CRDS:
                continue
            try:
                kubernetes_validate.validate(doc, args.kube_version, strict=True)
            except kubernetes_validate.ValidationError as e:
                fail(f"{name}: {doc['kind']} {doc['metadata']['name']}: {e.message}")
        deployment = next(d for d in documents if d["kind"] == "Deployment")
        pod = deployment["spec"]["template"]
        container = pod["spec"]["containers"][0]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
        assert security["capabilities"]["drop"] == ["ALL"]
        assert pod["spec"]["securityContext"]["runAsNonRoot"]
        assert "checksum/config" in pod["metadata"]["annotations"]
        assert container["readinessProbe"] and container["livenessProbe"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        if values and values.get("redis"):
            # Secrets by reference only: the variable that holds it, never its value.
            assert env["PHONECHECK__REDIS__HASH_KEY__ENV"] == "PHONECHECK_REDIS_HASH_KEY"
            assert env["PHONECHECK__STORAGE__DATABASE_URL__ENV"] == "PHONECHECK_DATABASE_URL"
        target = out / name
        target.mkdir()
        (target / "manifests.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
        print(f"render ({name}): {', '.join(kinds)}; valid for Kubernetes {args.kube_version}")

    if args.skip_checkov:
        return
    result = subprocess.run(
        [os.environ.get("CHECKOV", "checkov"), "--quiet", "--compact", "--framework", "kubernetes",
         "--config-file", str(ROOT / "helm" / ".checkov.yaml"), "-d", str(out)],
        text=True, capture_output=True,
    )
    print(result.stdout[-4000:])
    if result.returncode != 0:
        fail("checkov found failed checks (explain a skip in helm/.checkov.yaml, or fix the chart)")
    print("checkov: no failed checks")


if __name__ == "__main__":
    main()
