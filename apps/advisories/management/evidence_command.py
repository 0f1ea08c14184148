"""What ``import_epss``, ``import_kev`` and ``import_nvd`` share: files, ``--json``, the
report, progress, exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

COMMON_HELP = (
    "Matched to advisories through their CVE ids and aliases; APVs are "
    "re-prioritised. A row that cannot be used is listed and skipped. Exits 0 when the "
    "file was read, 1 when it could not be read at all."
)


class EvidenceImportCommand(BaseCommand):
    #: The feed's name in the summary line ("epss", "kev", "nvd").
    feed = ""
    #: Whether the command takes several files (import_nvd: yearly feeds, API pages), each
    #: imported on its own, with a progress bar; otherwise exactly one.
    several_files = False

    def run_import(self, paths: list[str], on_progress: Callable[[int], None]):
        """Import ``paths``; ``on_progress(rows)`` may be called with the rows read so far."""
        raise NotImplementedError

    def add_arguments(self, parser):
        if self.several_files:
            parser.add_argument("files", nargs="+", metavar="SOURCE")
        else:
            parser.add_argument("file", metavar="FILE")
        parser.add_argument("--json", dest="as_json", action="store_true",
                            help="one JSON line of counts and failures")

    def handle(self, *args, as_json: bool, **options):
        paths = options["files"] if self.several_files else [options["file"]]
        show_bar = self.several_files and not as_json and options.get("verbosity", 1) > 0
        bar = tqdm(desc=self.feed, unit=" rec", disable=not show_bar, file=self.stderr._out)
        last = [0]

        def progress(rows: int) -> None:
            bar.update(rows - last[0])
            last[0] = rows

        report = self.run_import(paths, progress)
        progress(report.rows)
        bar.close()
        if as_json:
            self.stdout.write(json.dumps(report.as_dict(), sort_keys=True))
        else:
            for failure in report.failures:
                self.stderr.write(f"FAILED {failure.where}: {failure.reason}")
            if report.failed > len(report.failures):
                self.stderr.write(f"... and {report.failed - len(report.failures)} more")
            if not report.unreadable or report.rows:
                self.stdout.write(report.summary())
        if report.unreadable:
            raise CommandError(report.unreadable, returncode=1)
