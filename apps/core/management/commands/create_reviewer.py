"""``manage.py create_reviewer USERNAME [--lead]``: a console login with a role."""

from __future__ import annotations

import secrets
import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.core.roles import LEADS, REVIEWERS, roles_sync


class Command(BaseCommand):
    help = "Create (or update) a reviewer who can log into the console; --lead makes a lead."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--lead", action="store_true", help="also a lead")
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password-stdin", action="store_true",
            help="read the password from stdin instead of generating one",
        )

    def handle(self, *args, username: str, lead: bool, email: str, password_stdin: bool, **kw):
        User = get_user_model()
        password = None
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
            try:
                validate_password(password)
            except ValidationError as exc:
                raise CommandError("password rejected: " + " ".join(exc.messages)) from exc
        with transaction.atomic():
            roles_sync()
            user, created = User.objects.get_or_create(
                username=username, defaults={"email": email}
            )
            if created and password is None:
                password = secrets.token_urlsafe(16)
                generated = True
            else:
                generated = False
            if password is not None:
                user.set_password(password)
            user.is_staff = True  # the console is the Django admin
            if email:
                user.email = email
            user.save()
            roles = [REVIEWERS, LEADS] if lead else [REVIEWERS]
            user.groups.add(*Group.objects.filter(name__in=roles))
            if not lead:
                user.groups.remove(*Group.objects.filter(name=LEADS))
        verb = "Created" if created else "Updated"
        self.stdout.write(self.style.SUCCESS(f"{verb} {username} with roles: {', '.join(roles)}"))
        if generated:
            self.stdout.write(f"Password (shown once): {password}")
