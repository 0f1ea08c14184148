"""propose_patches: one upgrade per package, manual where a lock file pins it."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from apps.advisories.services import advisories_import
from apps.inventory.services import project_add, project_scan
from apps.reviews.models import APV, Patch
from tests.factories import DEMO_ADVISORIES, git, make_repo

HASH = "b8eac752c5e14d3eca0e6dd9199cd627518cb5ec06add0de9d32baeee6fe645d"
POETRY_LOCK = """\
[[package]]
name = "pyyaml"
version = "5.3.1"
description = "YAML parser and emitter for Python"
optional = false
python-versions = ">=2.7, !=3.0.*, !=3.1.*, !=3.2.*, !=3.3.*, !=3.4.*"
files = [
    {file = "PyYAML-5.3.1.tar.gz", hash = "sha256:HASH"},
]

[metadata]
lock-version = "2.0"
python-versions = "^3.8"
content-hash = "0000000000000000000000000000000000000000000000000000000000000000"
""".replace("HASH", HASH)


@pytest.fixture
def advisories(db):
    advisories_import(sources=[str(DEMO_ADVISORIES)])


def test_command_proposes_upgrades_with_hash_notes_and_is_idempotent(advisories, tmp_path,
                                                                      capsys):
    repo = make_repo(tmp_path / "svc", {"requirements.txt": (
        "jinja2==2.10 \\\n    --hash=sha256:" + "74c935a1b8bb9a3947c50a54766a969d"
        "4846290e1e788ea44c1392163723c3bd\n"
        "urllib3==1.24.1  # via requests\n")})
    project_scan(project=project_add(name="svc", path=str(repo)))
    call_command("propose_patches", "--project", "svc", "--json")
    out = json.loads(capsys.readouterr().out)
    by_package = {p["package"]: p for p in out["patches"]}
    assert by_package["jinja2"]["to"] == "2.11.3"
    assert any("removed 1 --hash" in note for note in by_package["jinja2"]["notes"])
    assert by_package["urllib3"]["to"] == "1.26.18"
    assert len(by_package["urllib3"]["apvs"]) == APV.objects.filter(
        dependency__normalised_name="urllib3").count() > 1  # one shared patch
    text = git(repo, "show", f"{by_package['urllib3']['branch']}:requirements.txt")
    assert "urllib3==1.26.18  # via requests" in text
    call_command("propose_patches", "--project", "svc", "--json")
    assert json.loads(capsys.readouterr().out)["patches"] == []  # nothing open any more
    with pytest.raises(CommandError, match="no project named"):
        call_command("propose_patches", "--project", "nope")


def test_lock_files_get_a_manual_patch_with_the_reason(advisories, tmp_path):
    repo = make_repo(tmp_path / "svc", {
        "pyproject.toml": '[tool.poetry]\nname = "svc"\n\n[tool.poetry.dependencies]\n'
                          'python = "^3.8"\npyyaml = "^5.3"\n',
        "poetry.lock": POETRY_LOCK,
    })
    project_scan(project=project_add(name="svc", path=str(repo)))
    call_command("propose_patches")
    patch = Patch.objects.get()
    assert patch.strategy == "manual" and patch.branch == "" and patch.target_version == "5.4"
    assert "poetry update pyyaml" in patch.notes[-1]
    assert APV.objects.get().status == "pending_review"
    assert git(repo, "branch", "--list", "immune/*").strip() == ""
