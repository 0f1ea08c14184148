"""``manage.py add_project NAME --path PATH [--branch main]``"""

from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import ApplicationError
from apps.inventory.services import project_add


class Command(BaseCommand):
    help = "Watch a git working copy as a project."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--path", required=True)
        parser.add_argument("--branch", default="main", help="default branch (main)")
        parser.add_argument("--description", default="")

    def handle(self, *args, name, path, branch, description, **options):
        try:
            project = project_add(name=name, path=path, default_branch=branch,
                                  description=description)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(self.style.SUCCESS(
            f"Added project {project.name} ({project.path}, branch {project.default_branch})"
        ))
