"""The Kubernetes base (docker/k8s) renders, validates against the Kubernetes schemas
offline, and says what docs/operations.md says it does.

Rendering: `kubectl kustomize` where kubectl is installed, else the resources listed in
kustomization.yaml loaded here with its labels and image applied (the base uses nothing
else of kustomize; a test checks that). Validation: kubernetes-validate (pinned in
requirements/dev.txt), which bundles the JSON schemas of each Kubernetes release, strict
(unknown fields are errors), against the oldest release the worker supports and the newest
the validator knows.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "docker" / "k8s"
#: 1.33: user namespaces (hostUsers: false) and ProcMountType on by default (the worker).
K8S_VERSIONS = ["1.33.0", "1.37.0"]
SUPPORTED_KUSTOMIZE_KEYS = {"apiVersion", "kind", "labels", "resources", "images"}
PROCESSES = ("web", "worker", "beat")

kubernetes_validate = pytest.importorskip("kubernetes_validate")


def _kustomization() -> dict:
    return yaml.safe_load((BASE / "kustomization.yaml").read_text())


def _render_here() -> list[dict]:
    """What `kustomize build` makes of this base: its resources, labels and images."""
    kust = _kustomization()
    docs: list[dict] = []
    for name in kust["resources"]:
        docs.extend(d for d in yaml.safe_load_all((BASE / name).read_text()) if d)
    for entry in kust.get("labels", []):
        assert entry.get("includeSelectors") is False, "only metadata labels are applied here"
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])
    images = {i["name"]: f'{i.get("newName", i["name"])}:{i.get("newTag", "latest")}'
              for i in kust.get("images", [])}
    for doc in docs:
        for container in _containers(doc, init=True):
            if container["image"] in images:
                container["image"] = images[container["image"]]
    return docs


def _render_kubectl() -> list[dict] | None:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    done = subprocess.run([kubectl, "kustomize", str(BASE)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _pod_spec(doc: dict) -> dict | None:
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    return None


def _containers(doc: dict, init: bool = False) -> list[dict]:
    spec = _pod_spec(doc)
    if spec is None:
        return []
    return spec.get("containers", []) + (spec.get("initContainers", []) if init else [])


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return _render_kubectl() or _render_here()


@pytest.fixture(scope="module")
def by_kind(rendered):
    out: dict[tuple[str, str], dict] = {}
    for doc in rendered:
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in out, f"duplicate {key}"
        out[key] = doc
    return out


def _deployment(by_kind, process: str) -> dict:
    return by_kind[("Deployment", f"immune-{process}")]


def test_kustomization_uses_only_what_the_fallback_renderer_knows():
    kust = _kustomization()
    assert set(kust) <= SUPPORTED_KUSTOMIZE_KEYS
    for name in kust["resources"]:
        assert (BASE / name).is_file(), name
    listed = set(kust["resources"]) | {"kustomization.yaml"}
    stray = {p.name for p in BASE.glob("*.yaml")} - listed
    assert not stray, f"manifests not in kustomization.yaml: {stray}"


def test_fallback_renderer_matches_kubectl():
    from_kubectl = _render_kubectl()
    if from_kubectl is None:
        pytest.skip("kubectl is not installed")
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(from_kubectl, key=key) == sorted(_render_here(), key=key)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_document_validates_against_the_kubernetes_schema(rendered, version):
    problems = []
    for doc in rendered:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except Exception as exc:  # noqa: BLE001 - collect them all
            problems.append(f'{doc["kind"]}/{doc["metadata"]["name"]}: {exc}')
    assert not problems, "\n".join(problems)


def test_the_validator_works_offline_and_rejects_a_broken_manifest(by_kind):
    broken = copy.deepcopy(_deployment(by_kind, "web"))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["prot"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)
    broken = copy.deepcopy(_deployment(by_kind, "beat"))
    broken["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


def test_web_worker_and_beat_deployments_run_the_image_with_their_process(by_kind):
    for process in PROCESSES:
        deployment = _deployment(by_kind, process)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == [process]
        assert container["image"].startswith("immune")


def test_beat_is_a_single_replica_that_is_recreated(by_kind):
    beat = _deployment(by_kind, "beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert ("HorizontalPodAutoscaler", "immune-beat") not in by_kind


def test_every_container_has_probes_and_resources(rendered):
    checked = 0
    for doc in rendered:
        for container in _containers(doc):
            where = f'{doc["metadata"]["name"]}/{container["name"]}'
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), f"{where} {part}"
            if doc["kind"] == "Deployment":
                assert "livenessProbe" in container, where
                assert "startupProbe" in container, where
            checked += 1
        for container in _pod_spec(doc).get("initContainers", []) if _pod_spec(doc) else []:
            assert {"requests", "limits"} <= set(container.get("resources", {}))
    assert checked >= 4  # web, worker, beat, migrate


def test_web_probes_use_the_health_endpoints(by_kind):
    (web,) = _deployment(by_kind, "web")["spec"]["template"]["spec"]["containers"]
    assert web["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert web["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert web["startupProbe"]["httpGet"]["path"] == "/health/startup"
    names = {e["name"]: e.get("value") for e in web["env"]}
    assert "$(POD_IP)" in names["ALLOWED_HOSTS"], "probes address the pod by IP"


def test_worker_probes_ping_it_through_celery(by_kind):
    (worker,) = _deployment(by_kind, "worker")["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "livenessProbe"):
        command = " ".join(worker[probe]["exec"]["command"])
        assert "celery -A immune inspect ping" in command
        assert "--destination" in command


def test_security_contexts(rendered):
    for doc in rendered:
        spec = _pod_spec(doc)
        if spec is None:
            continue
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 10001
        assert spec["automountServiceAccountToken"] is False
        for container in _containers(doc, init=True):
            sc = container["securityContext"]
            where = f'{doc["metadata"]["name"]}/{container["name"]}'
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert "privileged" not in sc and "add" not in sc["capabilities"], where


def test_only_the_worker_lifts_what_bubblewrap_needs(by_kind):
    for process in PROCESSES:
        spec = _deployment(by_kind, process)["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        sc = container["securityContext"]
        if process == "worker":
            assert spec["hostUsers"] is False
            assert sc["procMount"] == "Unmasked"
            assert sc["seccompProfile"] == {"type": "Unconfined"}
            assert sc["appArmorProfile"] == {"type": "Unconfined"}
        else:
            assert "hostUsers" not in spec and "procMount" not in sc
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_volumes_shared_by_web_and_worker(by_kind):
    claims = {name for kind, name in by_kind if kind == "PersistentVolumeClaim"}
    assert {"immune-repositories", "immune-wargame-envs", "immune-beat"} <= claims
    for name in ("immune-repositories", "immune-wargame-envs"):
        assert by_kind[("PersistentVolumeClaim", name)]["spec"]["accessModes"] == [
            "ReadWriteMany"]
    for process in ("web", "worker"):
        spec = _deployment(by_kind, process)["spec"]["template"]["spec"]
        volumes = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName")
                   for v in spec["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
        assert volumes[mounts["/app/data"]] == "immune-repositories"
        assert volumes[mounts["/app/wargame-envs"]] == "immune-wargame-envs"
        assert "/tmp" in mounts


def test_autoscalers_and_disruption_budget(by_kind):
    for process in ("web", "worker"):
        hpa = by_kind[("HorizontalPodAutoscaler", f"immune-{process}")]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["name"] == f"immune-{process}"
        assert hpa["spec"]["minReplicas"] >= 2
    pdb = by_kind[("PodDisruptionBudget", "immune-web")]
    web_labels = _deployment(by_kind, "web")["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["selector"]["matchLabels"] == web_labels


def _policies(by_kind) -> dict[str, dict]:
    return {name: doc["spec"] for (kind, name), doc in by_kind.items()
            if kind == "NetworkPolicy"}


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _ports(rules: list[dict]) -> set[int]:
    return {p["port"] for rule in rules for p in rule.get("ports", [])}


def test_network_policies(by_kind):
    policies = _policies(by_kind)
    deny = policies["immune-default-deny"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert all("ingress" not in p and "egress" not in p for p in [deny])

    labels = {p: _deployment(by_kind, p)["spec"]["template"]["metadata"]["labels"]
              for p in PROCESSES}
    # Ingress: web alone from anywhere; the worker only from monitoring, on its metrics port.
    open_ingress = [name for name, p in policies.items()
                    if any("from" not in rule for rule in p.get("ingress", []))]
    assert open_ingress == ["immune-web-ingress"]
    web_in = policies["immune-web-ingress"]
    assert _selects(web_in["podSelector"], labels["web"])
    assert not _selects(web_in["podSelector"], labels["worker"])
    assert _ports(web_in["ingress"]) == {8000}
    beat_ingress = [n for n, p in policies.items() if p.get("ingress")
                    and _selects(p["podSelector"], labels["beat"])]
    assert not beat_ingress
    worker_in = [p for p in policies.values() if p.get("ingress")
                 and _selects(p["podSelector"], labels["worker"])]
    assert all(_ports(p["ingress"]) == {9808} for p in worker_in)

    # PostgreSQL and Redis: from immune pods only.
    for name, port in (("postgresql", 5432), ("redis", 6379)):
        (policy,) = [p for p in policies.values()
                     if p["podSelector"].get("matchLabels") == {"app.kubernetes.io/name": name}]
        (rule,) = policy["ingress"]
        assert rule["from"] == [{"podSelector": {"matchLabels": {
            "app.kubernetes.io/name": "immune"}}}]
        assert _ports([rule]) == {port}

    # Egress: DNS for every immune pod; HTTPS (the package index) for the worker.
    dns = policies["immune-egress-dns"]
    assert _ports(dns["egress"]) == {53}
    assert all(_selects(dns["podSelector"], labels[p]) for p in PROCESSES)
    worker_out = policies["immune-worker-egress-internet"]
    assert _selects(worker_out["podSelector"], labels["worker"])
    assert not _selects(worker_out["podSelector"], labels["beat"])
    assert 443 in _ports(worker_out["egress"])
    blocks = [peer["ipBlock"] for rule in worker_out["egress"] for peer in rule.get("to", [])]
    assert any(b["cidr"] == "0.0.0.0/0" and "169.254.0.0/16" in b["except"] for b in blocks)


def test_settings_come_from_the_configmap_and_the_secret(rendered):
    for doc in rendered:
        for container in _containers(doc, init=True):
            refs = container.get("envFrom", [])
            assert {"configMapRef": {"name": "immune-config"}} in refs
            assert {"secretRef": {"name": "immune-secrets"}} in refs
