"""``manage.py build_corpus [--packages P ...] [--max-per-package N] [--max-earlier N]
[--retry-errors]``."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.wargaming.corpus import (
    DEFAULT_MAX_EARLIER,
    DEFAULT_MAX_PER_PACKAGE,
    EXPORT_PATH,
    corpus_build,
)


class Command(BaseCommand):
    help = ("Wargame the corpus for real: every package PoC's vulnerable release against the "
            "later releases of its package (capped per package), the earlier releases "
            "against the vulnerable one, and the demo service's code patches. Resumable: "
            "stored pairs are skipped. Exports the corpus as JSON lines "
            "(data/corpus/wargames.jsonl).")

    def add_arguments(self, parser):
        parser.add_argument("--packages", nargs="+", metavar="P",
                            help="only these packages (immune-demo-service: the code patches)")
        parser.add_argument("--max-per-package", type=int, default=DEFAULT_MAX_PER_PACKAGE,
                            metavar="N", help="later releases per PoC at most (default "
                            f"{DEFAULT_MAX_PER_PACKAGE}; 0: no cap)")
        parser.add_argument("--max-earlier", type=int, default=DEFAULT_MAX_EARLIER,
                            metavar="N", help="earlier releases per PoC upgraded to its "
                            f"vulnerable one, at most (default {DEFAULT_MAX_EARLIER}; 0: none)")
        parser.add_argument("--retry-errors", action="store_true",
                            help="run again the pairs whose newest run gave no verdict about "
                            "the pair (error, timeout, inconclusive)")
        parser.add_argument("--output", default=str(EXPORT_PATH),
                            help="where the JSON lines go (default data/corpus/wargames.jsonl)")
        parser.add_argument("--no-export", action="store_true")
        parser.add_argument("--json", dest="as_json", action="store_true")

    def handle(self, *args, packages, max_per_package, max_earlier, retry_errors, output,
               no_export, as_json, **options):
        if max_per_package < 0 or max_earlier < 0:
            raise CommandError("--max-per-package and --max-earlier must be 0 or more")
        say = (lambda _: None) if as_json else (lambda line: self.stdout.write(line))
        report = corpus_build(packages=packages, max_per_package=max_per_package or None,
                              max_earlier=max_earlier,
                              retry_errors=retry_errors, say=say,
                              export_to=None if no_export else Path(output),
                              command=_command(sys.argv))
        if as_json:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
            return
        verdicts = ", ".join(f"{v} {n}" for v, n in sorted(report.verdicts.items())) or "none"
        self.stdout.write(self.style.SUCCESS(
            f"corpus: {report.planned} pairs over {len(report.packages)} packages; ran "
            f"{report.ran} ({verdicts}), skipped {report.skipped} already stored; "
            f"{report.seconds / 60:.1f} min"
            + (f"; exported {report.exported} runs to {report.export_path}"
               if report.exported is not None else "")))
        if report.index_failures:
            self.stdout.write(self.style.WARNING(
                "the index did not answer for: " + ", ".join(sorted(report.index_failures))))


def _command(argv: list[str]) -> str:
    """How this build was asked for, for the export's header line."""
    if len(argv) > 1 and argv[1] == "build_corpus":
        return "python manage.py " + shlex.join(argv[1:])
    return "python manage.py build_corpus"
