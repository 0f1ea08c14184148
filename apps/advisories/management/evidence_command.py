"""What ``import_epss`` and ``import_kev`` share: a file, ``--json``, the report, exit codes."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

COMMON_HELP = (
    "Matched to advisories through their CVE ids and aliases; APVs are "
    "re-prioritised. A row that cannot be used is listed and skipped. Exits 0 when the "
    "file was read, 1 when it could not be read at all."
)


class EvidenceImportCommand(BaseCommand):
    #: The feed's name in the summary line ("epss", "kev").
    feed = ""

    def run_import(self, path: str):
        raise NotImplementedError

    def add_arguments(self, parser):
        parser.add_argument("file", metavar="FILE")
        parser.add_argument("--json", dest="as_json", action="store_true",
                            help="one JSON line of counts and failures")

    def handle(self, *args, file: str, as_json: bool, **options):
        report = self.run_import(file)
        if as_json:
            self.stdout.write(json.dumps(report.as_dict(), sort_keys=True))
        else:
            for failure in report.failures:
                self.stderr.write(f"FAILED {failure.where}: {failure.reason}")
            if report.failed > len(report.failures):
                self.stderr.write(f"... and {report.failed - len(report.failures)} more")
            if not report.unreadable:
                self.stdout.write(
                    f"{self.feed} rows {report.rows}: created {report.created}, updated "
                    f"{report.updated}, unchanged {report.unchanged}, removed {report.removed}, "
                    f"failed {report.failed}; advisories updated {report.advisories_updated}")
        if report.unreadable:
            raise CommandError(report.unreadable, returncode=1)

