"""Validate the Kubernetes manifests under ``deploy/kubernetes`` (``make k8s-validate``).

Three layers, all offline:

1. Schemas. Core kinds (Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget, ...)
   against the strict JSON schemas that ``kubernetes-validate`` (PyPI) bundles, generated from
   the Kubernetes OpenAPI spec, for each version in ``KUBERNETES_VERSIONS``. Strict: an unknown
   or misspelt field is an error, as ``kubectl apply --validate=strict`` would make it.
2. The KServe ``InferenceService`` (a CRD, which no bundled schema covers) against the schema
   shipped in ``deploy/kubernetes/schemas/``; its containers, volumes and pod security context
   are checked against the same strict Kubernetes definitions.
3. Consistency with this project, which no schema can know: the user id matches the Dockerfile's
   USER, probes hit routes the service has, ports agree (PORT, containerPort, Service targetPort,
   EXPOSE), selectors match the pod labels, the HPA and PDB point at the Deployment, every
   container is hardened (non-root, read-only root, no privilege escalation, capabilities
   dropped, /tmp writable), WORKERS x ORT_INTRA_OP_THREADS fits the CPU limit, the preStop
   sleep plus the service's drain (TIMEOUT_SHUTDOWN) fit the termination grace period, and the
   KServe name equals the default model's card name (the OIP route is /v2/models/<name>/infer).
   Probe paths are matched by the service's own app (``create_app(...).routes``).

Usage: ``validate_k8s.py [DIR]``; exit status 0 when everything passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
# The oldest minor still widely run and the newest the bundled schemas know.
KUBERNETES_VERSIONS = ("1.30.0", "latest")
CRD_SCHEMAS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservice-serving-v1beta1.json"
}
NOT_OBJECTS = {"Kustomization"}  # kustomize inputs, not API objects
K8S_DEFS_ID = "https://kubernetes.io/api/_definitions.json"

Doc = dict[str, Any]


class Report:
    """Collects failures; prints one line per check."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def ok(self, where: str, what: str) -> None:
        print(f"  ok    {where}: {what}")

    def fail(self, where: str, what: str) -> None:
        self.failures.append(f"{where}: {what}")
        print(f"  FAIL  {where}: {what}")

    def check(self, condition: bool, where: str, what: str) -> None:
        (self.ok if condition else self.fail)(where, what)


def _load(directory: Path) -> list[tuple[Path, Doc]]:
    docs: list[tuple[Path, Doc]] = []
    for path in sorted(directory.rglob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path, doc))
    return docs


def _name(path: Path, doc: Doc, root: Path) -> str:
    name = doc.get("metadata", {}).get("name")
    return f"{path.relative_to(root)} {doc.get('kind')}" + (f"/{name}" if name else "")


def _versions() -> list[str]:
    from kubernetes_validate import utils

    return [utils.latest_version() if v == "latest" else v for v in KUBERNETES_VERSIONS]


def _error_text(error: Any) -> str:
    location = "/".join(str(p) for p in getattr(error, "absolute_path", [])) or "(root)"
    return f"{location}: {str(getattr(error, 'message', error)).splitlines()[0][:200]}"


def validate_core(doc: Doc, where: str, report: Report) -> None:
    """Strict schema validation against every Kubernetes version in KUBERNETES_VERSIONS."""
    from kubernetes_validate import utils

    for version in _versions():
        try:
            utils.validate(doc, version, strict=True)
        except utils.SchemaNotFoundError as exc:
            report.fail(where, exc.message)
            return
        except utils.ValidationError as exc:
            report.fail(where, f"schema (Kubernetes {version}, strict): {_error_text(exc)}")
            return
    report.ok(where, f"schema, strict, Kubernetes {' and '.join(_versions())}")


def validate_crd(doc: Doc, schema_file: Path, where: str, report: Report) -> None:
    """A custom resource against a shipped schema that refers to the Kubernetes definitions."""
    import jsonschema
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    schema = json.loads(schema_file.read_text())
    for version in _versions():
        definitions = utils.schema_contents(
            f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version
        )
        registry: Registry[Any] = Registry().with_resources(
            [
                (K8S_DEFS_ID, Resource.from_contents(definitions)),
                (schema["$id"], Resource.from_contents(schema)),
            ]
        )
        validator = jsonschema.Draft202012Validator(schema, registry=registry)
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        if errors:
            for error in errors:
                report.fail(
                    where, f"schema {schema_file.name} (Kubernetes {version}): {_error_text(error)}"
                )
            return
    report.ok(
        where, f"schema {schema_file.name}, Kubernetes definitions {' and '.join(_versions())}"
    )


# --- project consistency ------------------------------------------------------------------------


def _dockerfile() -> dict[str, str]:
    """USER uid and EXPOSEd port from the Dockerfile's last stage."""
    text = (REPO / "Dockerfile").read_text()
    user = re.findall(r"^USER\s+(\d+)", text, re.MULTILINE)
    expose = re.findall(r"^EXPOSE\s+(\d+)", text, re.MULTILINE)
    return {"uid": user[-1] if user else "", "port": expose[-1] if expose else ""}


def _service_answers_get() -> Any:
    """A predicate: does the service's app route ``GET path`` to an endpoint?

    Asked of the app itself (``create_app(...).routes``, as Starlette matches them), so
    that a probe on a path that merely appears in the sources, or on a POST-only route,
    does not pass.
    """
    sys.path.insert(0, str(REPO))
    from starlette.routing import Match

    from service.app import create_app
    from service.settings import Settings

    routes = create_app(Settings(model_path=Path("unused.onnx"))).routes  # no model loaded

    def answers(path: str) -> bool:
        scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
        return any(route.matches(scope)[0] is Match.FULL for route in routes)

    return answers


def _default_timeout_shutdown() -> float:
    from service.settings import Settings

    return float(Settings.model_fields["timeout_shutdown"].default)


def _card_name() -> str | None:
    model = REPO / "models" / "digits" / "model.onnx"
    if not model.exists():
        return None
    sys.path.insert(0, str(REPO))
    from bnfold.digest import read_card

    return read_card(model.read_bytes()).name


def _pod_spec(doc: Doc) -> Doc | None:
    kind = doc.get("kind")
    if kind in {"Deployment", "StatefulSet", "DaemonSet"}:
        spec: Doc = doc["spec"]["template"]["spec"]
        return spec
    if kind == "InferenceService":
        predictor: Doc = doc["spec"]["predictor"]
        return predictor
    return None


def _cpu_cores(value: Any) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _env(container: Doc) -> dict[str, str]:
    return {e["name"]: str(e.get("value", "")) for e in container.get("env", [])}


def check_pod(doc: Doc, where: str, report: Report, facts: dict[str, Any]) -> None:
    """Hardening, probes, ports and sizing of every container of a workload."""
    pod = _pod_spec(doc)
    if pod is None:
        return
    security = pod.get("securityContext", {})
    report.check(
        security.get("runAsNonRoot") is True, where, "pod securityContext.runAsNonRoot: true"
    )
    report.check(
        str(security.get("runAsUser")) == facts["uid"],
        where,
        f"runAsUser {security.get('runAsUser')} = the Dockerfile's USER {facts['uid']}",
    )
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for container in pod["containers"]:
        cwhere = f"{where} container {container['name']}"
        sc = container.get("securityContext", {})
        hardened = (
            sc.get("allowPrivilegeEscalation") is False
            and sc.get("readOnlyRootFilesystem") is True
            and "ALL" in sc.get("capabilities", {}).get("drop", [])
            and not sc.get("privileged", False)
        )
        report.check(
            hardened,
            cwhere,
            "readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL",
        )
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        report.check(
            mounts.get("/tmp") in volumes, cwhere, "/tmp is a writable volume (read-only root)"
        )
        resources = container.get("resources", {})
        complete = all(
            k in resources.get(part, {})
            for part in ("requests", "limits")
            for k in ("cpu", "memory")
        )
        report.check(complete, cwhere, "cpu and memory requests and limits set")
        env = _env(container)
        ports = {
            str(p.get("name", "")): int(p["containerPort"]) for p in container.get("ports", [])
        }
        port = env.get("PORT", facts["port"])
        report.check(
            port in {str(p) for p in ports.values()} and port == facts["port"],
            cwhere,
            f"PORT {port} = containerPort {sorted(ports.values())} = EXPOSE {facts['port']}",
        )
        if complete:
            workers = int(env.get("WORKERS", "1"))
            threads = int(env.get("ORT_INTRA_OP_THREADS", "1"))
            limit = _cpu_cores(resources["limits"]["cpu"])
            report.check(
                workers * threads <= max(limit, 1.0),
                cwhere,
                f"WORKERS {workers} x ORT_INTRA_OP_THREADS {threads} fits the CPU limit {limit:g}",
            )
        for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(probe_name)
            if probe is None:
                if probe_name != "startupProbe":
                    report.fail(cwhere, f"no {probe_name}")
                continue
            http = probe.get("httpGet", {})
            path, probe_port = http.get("path"), http.get("port")
            port_ok = probe_port in ports or str(probe_port) in {str(p) for p in ports.values()}
            report.check(
                isinstance(path, str) and facts["answers_get"](path) and port_ok,
                cwhere,
                f"{probe_name} GET {path} on port {probe_port}: a service route, a container port",
            )
        facts["images"].add(container["image"])
        grace = float(pod.get("terminationGracePeriodSeconds", 30))
        shutdown = float(env.get("TIMEOUT_SHUTDOWN", facts["timeout_shutdown"]))
        pre_stop = _pre_stop_seconds(container)
        report.check(
            pre_stop + shutdown + 2 <= grace,
            cwhere,
            f"preStop {pre_stop:g} s + TIMEOUT_SHUTDOWN {shutdown:g} s + 2 s "
            f"<= terminationGracePeriodSeconds {grace:g} (the drain ends before SIGKILL)",
        )


def _pre_stop_seconds(container: Doc) -> float:
    """Seconds a container's preStop hook sleeps (``sleep N``, ``time.sleep(N)``), else 0."""
    hook = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in hook:  # the native sleep action
        return float(hook["sleep"].get("seconds", 0))
    command = " ".join(map(str, hook.get("exec", {}).get("command", [])))
    found = re.search(r"sleep[\s(]+([0-9.]+)", command)
    return float(found.group(1)) if found else 0.0


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_links(
    docs: list[tuple[Path, Doc]], root: Path, report: Report, facts: dict[str, Any]
) -> None:
    """Cross-object references: selectors, targets, image, model name, kustomization."""
    by_kind: dict[str, list[tuple[Path, Doc]]] = {}
    for path, doc in docs:
        by_kind.setdefault(str(doc.get("kind")), []).append((path, doc))
    deployments = {d["metadata"]["name"]: d for _, d in by_kind.get("Deployment", [])}
    for path, svc in by_kind.get("Service", []):
        where = _name(path, svc, root)
        selector = svc["spec"].get("selector", {})
        targets = [
            d
            for d in deployments.values()
            if _labels_match(selector, d["spec"]["template"]["metadata"].get("labels", {}))
        ]
        report.check(bool(targets), where, f"selector {selector} matches a Deployment's pod labels")
        for target in targets:
            names = {
                str(p.get("name")): p["containerPort"]
                for c in target["spec"]["template"]["spec"]["containers"]
                for p in c.get("ports", [])
            }
            for port in svc["spec"]["ports"]:
                tp = port.get("targetPort", port["port"])
                report.check(
                    tp in names or tp in names.values(),
                    where,
                    f"port {port['port']} -> targetPort {tp} is a container port",
                )
    for name, dep in deployments.items():
        where = f"Deployment/{name}"
        report.check(
            _labels_match(
                dep["spec"]["selector"].get("matchLabels", {}),
                dep["spec"]["template"]["metadata"].get("labels", {}),
            ),
            where,
            "selector matches the pod template labels",
        )
    for path, hpa in by_kind.get("HorizontalPodAutoscaler", []):
        ref = hpa["spec"]["scaleTargetRef"]
        report.check(
            ref.get("kind") == "Deployment" and ref.get("name") in deployments,
            _name(path, hpa, root),
            f"scaleTargetRef {ref.get('kind')}/{ref.get('name')} exists",
        )
        lo, hi = hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]
        report.check(
            lo >= 2 and hi >= lo, _name(path, hpa, root), f"replicas {lo}..{hi} (>= 2 for HA)"
        )
    for path, pdb in by_kind.get("PodDisruptionBudget", []):
        selector = pdb["spec"]["selector"].get("matchLabels", {})
        report.check(
            any(
                _labels_match(selector, d["spec"]["template"]["metadata"].get("labels", {}))
                for d in deployments.values()
            ),
            _name(path, pdb, root),
            "selector matches a Deployment's pods",
        )
    report.check(
        len(facts["images"]) == 1,
        str(root),
        f"one image everywhere: {sorted(facts['images'])}",
    )
    card_name = _card_name()
    for path, isvc in by_kind.get("InferenceService", []):
        name = isvc["metadata"]["name"]
        if card_name is None:
            report.ok(_name(path, isvc, root), "models/digits/model.onnx absent: name not compared")
        else:
            report.check(
                name == card_name,
                _name(path, isvc, root),
                f"name '{name}' = the default model's card name '{card_name}' (OIP route)",
            )
    for path, kust in by_kind.get("Kustomization", []):
        missing = [r for r in kust.get("resources", []) if not (path.parent / r).exists()]
        report.check(
            not missing, _name(path, kust, root), f"resources exist {missing or ''}".strip()
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", nargs="?", type=Path, default=REPO / "deploy" / "kubernetes")
    args = parser.parse_args(argv)
    root: Path = args.directory.resolve()
    try:
        import kubernetes_validate
    except ImportError:
        print("validate_k8s: needs kubernetes-validate: pip install 'kubernetes-validate==1.37.0'")
        return 2
    docs = [(p, d) for p, d in _load(root) if "schemas" not in p.relative_to(root).parts]
    version = kubernetes_validate.__version__
    print(f"validate_k8s: {len(docs)} objects under {root} (kubernetes-validate {version})")
    report = Report()
    facts: dict[str, Any] = {**_dockerfile(), "answers_get": _service_answers_get()}
    facts.update(images=set(), timeout_shutdown=_default_timeout_shutdown())
    for path, doc in docs:
        where = _name(path, doc, root)
        key = (doc.get("apiVersion"), doc.get("kind"))
        if doc.get("kind") in NOT_OBJECTS:
            continue
        if key in CRD_SCHEMAS:
            validate_crd(doc, root / "schemas" / CRD_SCHEMAS[key], where, report)
        else:
            validate_core(doc, where, report)
        check_pod(doc, where, report, facts)
    check_links(docs, root, report, facts)
    if report.failures:
        print(f"validate_k8s: {len(report.failures)} failure(s)")
        return 1
    print(f"validate_k8s: OK ({len(docs)} objects)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
