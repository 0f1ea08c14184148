"""``manage.py add_project NAME --path PATH [--branch main] [--include GLOB] [--exclude GLOB]``"""

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
        parser.add_argument(
            "--include", action="append", default=[], metavar="GLOB",
            help="read only manifests whose path in the repository matches GLOB "
                 "(repeatable; ** spans folders)")
        parser.add_argument(
            "--exclude", action="append", default=[], metavar="GLOB",
            help="never read manifests whose path matches GLOB, e.g. 'tests/**' (repeatable)")

    def handle(self, *args, name, path, branch, description, include, exclude, **options):
        try:
            project = project_add(name=name, path=path, default_branch=branch,
                                  description=description, manifest_include=include,
                                  manifest_exclude=exclude)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        patterns = "".join(
            f", {label} {' '.join(values)}" for label, values in
            (("include", project.manifest_include), ("exclude", project.manifest_exclude))
            if values)
        self.stdout.write(self.style.SUCCESS(
            f"Added project {project.name} ({project.path}, branch {project.default_branch}"
            f"{patterns})"
        ))
