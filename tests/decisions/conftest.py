"""A real demo repository with real patches proposed, for the decision tests."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from apps.inventory.models import Project
from apps.reviews.models import APV


@pytest.fixture
def proposed(db, settings, tmp_path):
    """The demo project (bundled advisories, a real git repo) with every patch proposed."""
    settings.IMMUNE_DATA_DIR = tmp_path
    call_command("demo", "--no-wargame", stdout=io.StringIO())  # proposes the patches too
    return Project.objects.get(name="demo")


def apv_of(package: str) -> APV:
    return (APV.objects.select_related("current_patch", "project")
            .filter(dependency__normalised_name=package).order_by("code").first())


@pytest.fixture
def proposed_tx(transactional_db, settings, tmp_path):
    """As ``proposed``, for tests whose threads need committed rows."""
    settings.IMMUNE_DATA_DIR = tmp_path
    call_command("demo", "--no-wargame", stdout=io.StringIO())
    return Project.objects.get(name="demo")
