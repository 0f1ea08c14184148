"""docker/docker-compose.yml: the services, volumes, health checks and worker privileges
docs/operations.md describes. `docker compose config` is used where the compose plugin is
installed (it needs no engine); otherwise the YAML is checked here, anchors resolved."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "docker-compose.yml"
APP = ("migrate", "web", "worker", "beat")
ENV = {"SECRET_KEY": "x" * 50, "POSTGRES_PASSWORD": "pw", "METRICS_TOKEN": "tok",
       "GRAFANA_ADMIN_PASSWORD": "pw"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _has_compose_plugin() -> bool:
    docker = shutil.which("docker")
    if not docker:
        return False
    return subprocess.run([docker, "compose", "version"], capture_output=True,
                          timeout=30).returncode == 0


def test_docker_compose_config_accepts_it(tmp_path):
    if not _has_compose_plugin():
        pytest.skip("the docker compose plugin is not installed")
    env = tmp_path / ".env"
    env.write_text("".join(f"{k}={v}\n" for k, v in ENV.items()))
    done = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "--env-file", str(env),
                           "config", "--quiet"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_stack(services):
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker", "beat",
                             "prometheus", "grafana"}


def test_one_image_for_every_process_with_its_command(services):
    images = {services[s]["image"] for s in APP}
    assert len(images) == 1
    for name in APP:
        service = services[name]
        assert service["command"] == [name]
        assert service["build"]["dockerfile"] == "docker/Dockerfile"
        assert service["user"] == "10001:10001"
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        assert "cap_add" not in service and not service.get("privileged")


def test_every_long_running_service_has_a_healthcheck(services):
    for name, service in services.items():
        if name == "migrate":
            assert service["healthcheck"] == {"disable": True}
            assert service["restart"] == "no"
            continue
        check = service["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    assert services["web"]["healthcheck"]["test"][-1] == "web"
    assert services["worker"]["healthcheck"]["test"][-1] == "worker"
    assert "beat" in services["beat"]["healthcheck"]["test"]


def test_processes_start_after_migrations_and_healthy_datastores(services):
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
        assert depends["postgres"] == {"condition": "service_healthy"}
        assert depends["redis"] == {"condition": "service_healthy"}


def test_web_and_worker_share_repositories_and_environments(compose, services):
    for name in ("web", "worker"):
        volumes = services[name]["volumes"]
        assert "repositories:/app/data" in volumes
        assert "wargame-envs:/app/wargame-envs" in volumes
    assert {"repositories", "wargame-envs", "pgdata", "beat-schedule"} <= set(compose["volumes"])
    assert services["beat"]["volumes"] == ["beat-schedule:/app/beat"]


def test_only_the_worker_gets_what_bubblewrap_needs(services):
    lifted = {"seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"}
    assert lifted <= set(services["worker"]["security_opt"])
    for name in ("web", "beat", "migrate"):
        assert not lifted & set(services[name]["security_opt"]), name


def test_settings_and_metrics(services):
    env = services["web"]["environment"]
    assert env["DJANGO_ENV"] == "production"
    assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")
    assert "web" in env["ALLOWED_HOSTS"], "Prometheus reaches web as web:8000"
    assert env["WORKER_METRICS_PORT"] == "9808"
    assert "9808" in services["worker"]["expose"]
    for published in (services[s].get("ports", []) for s in services):
        assert all(p.startswith("127.0.0.1:") for p in published), published


def test_monitoring_mounts_exist(services):
    for name in ("prometheus", "grafana"):
        for mount in services[name]["volumes"]:
            source = mount.split(":")[0]
            if source.startswith("./"):
                assert (COMPOSE.parent / source).exists(), source
