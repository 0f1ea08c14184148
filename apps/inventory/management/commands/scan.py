"""``manage.py scan PATH [PATH ...] [-r FILE] [--format table|json|sarif|cyclonedx]
[--fail-on SEVERITY] [--unknown-severity fail|ignore] [--ignore-vuln ID ...] [--output FILE]``

An ad-hoc scan for CI pipelines, like pip-audit or osv-scanner: no project, nothing written.
Exit 0 clean, 1 findings at or above the threshold (any finding by default), 2 usage or input
error (a missing path, a named file that cannot be read or is no manifest, a folder without a
manifest, no advisories imported, a bad option). A finding of unknown severity fails every
threshold unless ``--unknown-severity ignore``.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from apps.advisories.models import Advisory
from apps.inventory.adhoc import THRESHOLDS, ScanInputError, adhoc_scan, gate
from apps.inventory.management.cli import GateExitCodes, findings_error, usage_error
from apps.inventory.scan_formats import (
    FORMATS,
    render_cyclonedx,
    render_json,
    render_sarif,
    render_table,
)

#: Progress goes to stderr on a terminal, or for a scan this large when it is not one.
PROGRESS_MANIFESTS = 50
#: Unreadable lines listed on stderr; the rest are counted (all are in the JSON output).
_LISTED_ERRORS = 20


class Command(GateExitCodes, BaseCommand):
    help = ("Scan files or folders against the imported advisories, writing nothing; "
            "exit 1 on findings (a CI gate), 2 on a usage or input error.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="*", metavar="PATH",
                            help="a manifest file, or a folder whose manifests are discovered")
        parser.add_argument("-r", "--requirement", dest="requirements", action="append",
                            default=[], metavar="FILE",
                            help="a pip requirements file, whatever its name (repeatable)")
        parser.add_argument("--format", dest="fmt", choices=FORMATS, default="table")
        parser.add_argument("--fail-on", choices=THRESHOLDS, default=None,
                            help="exit 1 only for findings at least this severe "
                                 "(default: any finding)")
        parser.add_argument("--unknown-severity", choices=("fail", "ignore"), default="fail",
                            help="whether findings without a severity fail the scan "
                                 "(default: fail)")
        parser.add_argument("--ignore-vuln", action="append", default=[], metavar="ID",
                            help="leave out an advisory, by its id or any alias (repeatable)")
        parser.add_argument("--output", "-o", metavar="FILE",
                            help="write the report to FILE instead of stdout")

    def handle(self, *args, paths, requirements, fmt, fail_on, unknown_severity, ignore_vuln,
               output, **options):
        if fmt not in FORMATS:
            raise usage_error(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
        if fail_on is not None and fail_on not in THRESHOLDS:
            raise usage_error(f"unknown severity {fail_on!r}; one of {', '.join(THRESHOLDS)}")
        if unknown_severity not in ("fail", "ignore"):
            raise usage_error("--unknown-severity is 'fail' or 'ignore'")
        if not Advisory.objects.exists():
            # An empty advisory table passes everything: never let a gate pass on that.
            raise usage_error("no advisories imported; run import_advisories first")
        verbose = self.stderr.isatty()

        def progress(message: str, manifests: int) -> None:
            if verbose or manifests >= PROGRESS_MANIFESTS:
                self.stderr.write(f"scan: {message}", style_func=str)  # not in error red

        try:
            scan = adhoc_scan(paths=paths, requirements=requirements, progress=progress)
        except ScanInputError as exc:
            raise usage_error(str(exc)) from exc
        for error in scan.errors[:_LISTED_ERRORS]:
            where = f"{error['manifest']}:{error['line']}" if error["line"] else error["manifest"]
            self.stderr.write(f"warning: {where}: {error['reason']}",
                              style_func=self.style.WARNING)
        if len(scan.errors) > _LISTED_ERRORS:
            self.stderr.write(f"warning: {len(scan.errors) - _LISTED_ERRORS} more unreadable "
                              "lines (all are listed by --format json)",
                              style_func=self.style.WARNING)

        failing, ignored = gate(scan.findings, fail_on=fail_on,
                                unknown_severity=unknown_severity, ignore=ignore_vuln)
        ignored_ids = {id(f) for f in ignored}
        findings = [f for f in scan.findings if id(f) not in ignored_ids]
        threshold = fail_on or "any severity"
        if fmt == "json":
            text = render_json(scan, findings, failing=failing, ignored=ignored, options={
                "fail_on": fail_on, "unknown_severity": unknown_severity,
                "ignore_vuln": ignore_vuln})
        elif fmt == "sarif":
            text = render_sarif(scan, findings)
        elif fmt == "cyclonedx":
            text = render_cyclonedx(scan, findings)
        else:
            text = render_table(scan, findings, failing=len(failing), ignored=ignored,
                                threshold=threshold)
        self._emit(text, output)
        if failing:
            unknown = sum(1 for f in failing if f.severity == "unknown")
            note = (f" ({unknown} of unknown severity; --unknown-severity ignore passes those)"
                    if unknown else "")
            raise findings_error(f"{len(failing)} finding(s) at or above {threshold}{note}")

    def _emit(self, text: str, output: str | None) -> None:
        if not output:
            self.stdout.write(text, ending="")
            return
        try:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise usage_error(f"cannot write {output}: {exc.strerror or exc}") from exc
