"""A real demo repository with real patches proposed, for the decision tests."""

from __future__ import annotations

import pytest

from apps.inventory.models import Project
from apps.reviews.models import APV


@pytest.fixture
def proposed(db, settings, tmp_path, demo_template):
    """The demo project (bundled advisories, a real git repo) with every patch proposed:
    ``manage.py demo --no-wargame`` (tests/conftest.py: built once, copied per test)."""
    settings.IMMUNE_DATA_DIR = tmp_path
    demo_template.load(tmp_path)  # the demo proposes the patches too
    return Project.objects.get(name="demo")


def apv_of(package: str) -> APV:
    return (APV.objects.select_related("current_patch", "project")
            .filter(dependency__normalised_name=package).order_by("code").first())


@pytest.fixture
def proposed_tx(transactional_db, settings, tmp_path, demo_template):
    """As ``proposed``, for tests whose threads need committed rows."""
    settings.IMMUNE_DATA_DIR = tmp_path
    demo_template.load(tmp_path)
    return Project.objects.get(name="demo")
