"""``manage.py import_advisories SOURCE... [--source NAME] [--json] [--strict]``"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.advisories.services import advisories_import


class Command(BaseCommand):
    help = (
        "Import OSV advisories from files (JSON/YAML), folders, zip exports or http(s) URLs. "
        "Every record that cannot be imported is listed with its reason. Exits 0 when every "
        "source was read (failed records listed), 1 when a source could not be read at all, "
        "and with --strict also when any record failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("sources", nargs="+", metavar="SOURCE")
        parser.add_argument("--source", default="", help="feed name stored on each advisory")
        parser.add_argument("--json", dest="as_json", action="store_true",
                            help="end with one JSON line of counts and failures")
        parser.add_argument("--strict", action="store_true",
                            help="exit 1 when any record failed, not only when a source "
                                 "could not be read")

    def handle(self, *args, sources, source, as_json: bool, strict: bool, **options):
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
            for note in report.unparseable_ranges:
                self.stderr.write(f"UNPARSEABLE RANGE {note['id']} ({note['path']}): "
                                  f"{note['reason']}")
            self.stdout.write(
                f"records {report.records}: created {report.created}, "
                f"updated {report.updated}, unchanged {report.unchanged}, "
                f"withdrawn {report.withdrawn}, failed {report.failed}"
            )
        if report.unreadable_sources:
            names = ", ".join(f.path for f in report.unreadable_sources)
            raise CommandError(f"cannot read {names}", returncode=1)
        if strict and report.failed:
            raise CommandError(f"{report.failed} record(s) failed to import (--strict)",
                               returncode=1)
