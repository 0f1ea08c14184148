"""Roles: groups from a migration, create_reviewer gives a console login."""

import io

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command


@pytest.mark.django_db
def test_migration_created_both_role_groups():
    assert set(Group.objects.values_list("name", flat=True)) >= {"reviewers", "leads"}


@pytest.mark.django_db
def test_leads_manage_notification_subscriptions_and_reviewers_do_not(django_user_model):
    lead = django_user_model.objects.create_user("lena", is_staff=True)
    lead.groups.add(Group.objects.get(name="leads"))
    reviewer = django_user_model.objects.create_user("ravi", is_staff=True)
    reviewer.groups.add(Group.objects.get(name="reviewers"))
    assert lead.has_perm("notifications.add_subscription")
    assert lead.has_perm("notifications.view_delivery")
    assert not reviewer.has_perm("notifications.add_subscription")


@pytest.mark.django_db
def test_create_reviewer_makes_a_staff_reviewer_with_a_one_time_password(django_user_model):
    out = io.StringIO()
    call_command("create_reviewer", "ana", stdout=out)
    user = django_user_model.objects.get(username="ana")
    assert user.is_staff and not user.is_superuser
    assert list(user.groups.values_list("name", flat=True)) == ["reviewers"]
    password = out.getvalue().split("Password (shown once): ")[1].strip()
    assert user.check_password(password)


@pytest.mark.django_db
def test_lead_flag_adds_leads_and_rerun_keeps_password(django_user_model):
    call_command("create_reviewer", "bo", stdout=io.StringIO())
    before = django_user_model.objects.get(username="bo").password
    out = io.StringIO()
    call_command("create_reviewer", "bo", "--lead", stdout=out)
    user = django_user_model.objects.get(username="bo")
    assert set(user.groups.values_list("name", flat=True)) == {"reviewers", "leads"}
    assert user.password == before
    assert "Password" not in out.getvalue()


@pytest.mark.django_db
def test_weak_password_from_stdin_is_refused(monkeypatch, django_user_model):
    monkeypatch.setattr("sys.stdin", io.StringIO("123\n"))
    with pytest.raises(CommandError, match="password rejected"):
        call_command("create_reviewer", "cy", "--password-stdin", stdout=io.StringIO())
    assert not django_user_model.objects.filter(username="cy").exists()


@pytest.mark.django_db
def test_local_admin_is_created_once_and_printed(settings, tmp_path, django_user_model):
    settings.IMMUNE_DATA_DIR = tmp_path
    first = io.StringIO()
    call_command("ensure_local_admin", stdout=first)
    secret = (tmp_path / "local-admin.txt").read_text().strip()
    assert secret in first.getvalue()
    assert django_user_model.objects.get(username="admin").check_password(secret)
    assert oct((tmp_path / "local-admin.txt").stat().st_mode & 0o777) == "0o600"
    second = io.StringIO()
    call_command("ensure_local_admin", stdout=second)
    assert secret in second.getvalue()
    assert django_user_model.objects.filter(username="admin").count() == 1
