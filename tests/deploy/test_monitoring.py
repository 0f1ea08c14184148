"""docker/monitoring: the Prometheus config and alert rules pass promtool (Debian's
prometheus package; .ci/run installs it, a machine without it skips those tests), the
rules' unit tests pass, and the Grafana dashboard charts only metrics immune exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "docker" / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed "
                                    "(apt-get install prometheus; CI installs it)")

#: What immune exports (issue 15, apps/*/metrics.py) plus django-prometheus and Prometheus.
METRICS = {
    "immune_apvs", "immune_apvs_sla_breached", "immune_wargame_runs_total",
    "immune_wargame_duration_seconds", "immune_decisions_total",
    "immune_decision_wait_seconds", "immune_prediction_seconds",
    "immune_notifications_total", "immune_circuit_breaker_state",
    "immune_celery_task_failures_total",
    "django_http_requests_latency_seconds_by_view_method", "up",
}
#: What the dashboard must chart (the issue's list).
REQUIRED_IN_DASHBOARD = METRICS - {"up"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "rate", "increase", "irate",
    "histogram_quantile", "topk", "bottomk", "or", "and", "unless", "vector", "absent",
    "on", "ignoring", "group_left", "group_right", "offset", "bool", "le",
    "clamp_min", "clamp_max", "delta", "deriv", "time", "scalar", "label_replace",
}
RULE_FILES = sorted(MONITORING.glob("*rules*.yml"))
DASHBOARDS = sorted(MONITORING.glob("*dashboard*.json"))


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (identifiers outside {…}, strings, durations)."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    return {w for w in words if w not in PROMQL_WORDS and not w.startswith("__")}


def base_name(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in METRICS:
            return name[: -len(suffix)]
    return name


def _panels(dashboard: dict):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_the_files_exist():
    assert RULE_FILES and DASHBOARDS
    assert (MONITORING / "prometheus.yml").is_file()


@needs_promtool
def test_promtool_checks_the_rules():
    done = subprocess.run([PROMTOOL, "check", "rules", *map(str, RULE_FILES)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_promtool_checks_the_config(tmp_path):
    """The full check (rule files, credentials file) on a copy whose token file exists."""
    config = (MONITORING / "prometheus.yml").read_text()
    token = tmp_path / "metrics-token"
    token.write_text("not-a-real-token")
    assert "/prometheus/metrics-token" in config
    (tmp_path / "prometheus.yml").write_text(config.replace("/prometheus/metrics-token",
                                                            str(token)))
    for rules in RULE_FILES:
        shutil.copy(rules, tmp_path / rules.name)
    done = subprocess.run([PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_unit_tests_of_the_alerts():
    done = subprocess.run([PROMTOOL, "test", "rules", "alert-tests.yml"], cwd=MONITORING,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_scrape_config_reaches_web_with_the_token_and_every_worker():
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    web, worker = jobs["immune-web"], jobs["immune-worker"]
    assert web["metrics_path"] == "/metrics"
    assert web["authorization"]["type"] == "Bearer"
    assert web["authorization"]["credentials_file"]
    assert web["static_configs"][0]["targets"] == ["web:8000"]
    assert worker["dns_sd_configs"][0]["port"] == 9808
    assert worker["metrics_path"] == "/metrics"
    assert config["rule_files"] == [p.name for p in RULE_FILES]


def test_every_alert_has_for_severity_and_annotations():
    alerts = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                assert "alert" in rule, rule
                alerts.append(rule)
                assert "for" in rule, rule["alert"]
                assert rule["labels"]["severity"] in ("critical", "warning", "info")
                assert {"summary", "description", "runbook"} <= set(rule["annotations"])
                unknown = {base_name(n) for n in metric_names(rule["expr"])} - METRICS
                assert not unknown, f'{rule["alert"]}: {unknown}'
    expressions = " ".join(rule["expr"] for rule in alerts)
    for needed in ("immune_apvs_sla_breached", 'verdict="error"', 'verdict="patch_ineffective"',
                   "immune_circuit_breaker_state", "up{", "immune_celery_task_failures_total"):
        assert needed in expressions, needed


def test_every_alert_is_explained_in_the_operations_guide():
    guide = (ROOT / "docs" / "operations.md").read_text()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                assert f"`{rule['alert']}`" in guide, rule["alert"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_panels_chart_only_known_metrics(path):
    dashboard = json.loads(path.read_text())
    charted: set[str] = set()
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), panel["title"]
        for target in panel["targets"]:
            names = {base_name(n) for n in metric_names(target["expr"])}
            assert names, f'{panel["title"]}: no metric in {target["expr"]!r}'
            unknown = names - METRICS
            assert not unknown, f'{panel["title"]}: unknown metrics {unknown}'
            charted |= names
    missing = REQUIRED_IN_DASHBOARD - charted
    assert not missing, f"not charted: {missing}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_provisioned_and_laid_out(path):
    dashboard = json.loads(path.read_text())
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
    provisioning = MONITORING / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["type"] == "prometheus"
    provider = yaml.safe_load((provisioning / "dashboards" / "immune.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_metric_name_extraction():
    expr = ('histogram_quantile(0.95, sum by (le, view) (rate('
            'django_http_requests_latency_seconds_by_view_method_bucket{view!="x"}[5m])))')
    assert metric_names(expr) == {"django_http_requests_latency_seconds_by_view_method_bucket"}
    assert {base_name(n) for n in metric_names(expr)} == {
        "django_http_requests_latency_seconds_by_view_method"}
    assert metric_names('max by (breaker) (immune_circuit_breaker_state) == 2') == {
        "immune_circuit_breaker_state"}
