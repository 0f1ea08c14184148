"""``manage.py import_advisories SOURCE... [--source NAME] [--json]``"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.advisories.services import advisories_import


class Command(BaseCommand):
    help = (
        "Import OSV advisories from files (JSON/YAML), folders, zip exports or http(s) URLs. "
        "Exits non-zero when any record failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("sources", nargs="+", metavar="SOURCE")
        parser.add_argument("--source", default="", help="feed name stored on each advisory")
        parser.add_argument("--json", dest="as_json", action="store_true",
                            help="end with one JSON line of counts and failures")

    def handle(self, *args, sources, source, as_json: bool, **options):
        show_bar = not as_json and options.get("verbosity", 1) > 0
        bar = tqdm(desc="advisories", unit=" rec", disable=not show_bar, file=self.stderr._out)
        last = [0]

        def progress(report):
            bar.update(report.seen - last[0])
            last[0] = report.seen

        report = advisories_import(sources=sources, source_name=source, on_progress=progress)
        bar.update(report.seen - last[0])
        bar.close()
        if as_json:
            self.stdout.write(json.dumps(report.as_dict(), sort_keys=True))
        else:
            for failure in report.failures:
                self.stderr.write(f"FAILED {failure.path}: {failure.reason}")
            self.stdout.write(
                f"created {report.created}, updated {report.updated}, "
                f"unchanged {report.unchanged}, withdrawn {report.withdrawn}, "
                f"failed {report.failed}"
            )
        if report.failed:
            raise CommandError(f"{report.failed} record(s) failed to import", returncode=1)
