"""``manage.py demo`` loads real work and can be run again without duplicating it."""

import io

import pytest
from django.core.management import call_command

from apps.advisories.models import Advisory
from apps.reviews.models import APV


@pytest.mark.django_db
def test_demo_loads_bundled_advisories_and_scans_the_demo_repository(settings, tmp_path):
    settings.IMMUNE_DATA_DIR = tmp_path
    out = io.StringIO()
    call_command("demo", "--no-wargame", stdout=out)
    assert (tmp_path / "repos" / "demo" / ".git").is_dir()
    assert Advisory.objects.filter(source="immune-demo").count() == 62  # 55 + 7 demo-service
    packages = set(APV.objects.values_list("dependency__normalised_name", flat=True))
    assert {"pyyaml", "jinja2", "urllib3", "django"} <= packages
    assert "markupsafe" not in packages  # pinned, but no advisory affects 1.1.1
    codes = set(APV.objects.values_list("code", flat=True))
    call_command("demo", "--no-wargame", stdout=io.StringIO())
    assert set(APV.objects.values_list("code", flat=True)) == codes
    assert "0 new" not in out.getvalue()
    assert set(APV.objects.values_list("status", flat=True)) == {"pending_review"}
    assert "patches for demo: 9 upgrade(s) (0 of them deliberately bad), 1 manual, 14 code " \
        "patch(es)" in out.getvalue()
