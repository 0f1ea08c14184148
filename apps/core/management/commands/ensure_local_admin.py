"""``manage.py ensure_local_admin``: the login `make run` prints for a newcomer.

Creates the superuser ``admin`` with a random password the first time and keeps the
password in ``<data dir>/local-admin.txt`` (mode 0600) so later runs can print it
again. Refused in production: create real accounts there.
"""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from apps.core.roles import LEADS, REVIEWERS, roles_sync


class Command(BaseCommand):
    help = "Ensure a local admin login exists (development only) and print it."

    def handle(self, *args, **options):
        if settings.IMMUNE_ENV == "production":
            raise CommandError("ensure_local_admin is for development; use create_reviewer.")
        secret_file = settings.IMMUNE_DATA_DIR / "local-admin.txt"
        User = get_user_model()
        user = User.objects.filter(username="admin").first()
        if user is None:
            password = secrets.token_urlsafe(12)
            user = User(username="admin", email="admin@localhost", is_staff=True)
            user.is_superuser = True
            user.set_password(password)
            user.save()
            secret_file.parent.mkdir(parents=True, exist_ok=True)
            secret_file.write_text(password + "\n")
            os.chmod(secret_file, 0o600)
        roles_sync()
        user.groups.add(*Group.objects.filter(name__in=[REVIEWERS, LEADS]))
        if secret_file.exists():
            shown = f"password: {secret_file.read_text().strip()}"
            where = (
                f"(kept in {secret_file}; change it with `manage.py changepassword admin` "
                "and delete that file)"
            )
        else:
            shown, where = "password: the one you set", "(reset: manage.py changepassword admin)"
        self.stdout.write(
            f"Local admin login: http://127.0.0.1:8000/admin/  user: admin  {shown}\n{where}"
        )
