"""``manage.py scan_project NAME|--all [--json|--sarif|--cyclonedx] [--fail-on SEVERITY]
[--unknown-severity fail|ignore] [--ignore-vuln ID ...]``

Exit codes as ``scan``'s (apps/inventory/management/cli.py): 0 no open finding at or above
the threshold, 1 findings at or above it (any open finding by default), 2 a usage error or a
project that cannot be scanned. It lives in reviews, not inventory: its findings are APVs.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand

from apps.core.errors import ApplicationError
from apps.inventory.adhoc import THRESHOLDS, gate
from apps.inventory.management.cli import GateExitCodes, findings_error, usage_error
from apps.inventory.models import Project
from apps.inventory.services import project_scan
from apps.reviews.selectors import findings_for_project

#: APV statuses a reviewer has settled: shown in the report, never a gate failure.
SETTLED = ("risk_accepted", "false_positive", "applied")

VERSION = "immune 0.1.0"


class Command(GateExitCodes, BaseCommand):
    help = "Scan projects' manifests against the advisories and raise/resolve APVs."

    def add_arguments(self, parser):
        parser.add_argument("name", nargs="?")
        parser.add_argument("--all", action="store_true", help="scan every project")
        fmt = parser.add_mutually_exclusive_group()
        fmt.add_argument("--json", dest="fmt", action="store_const", const="json")
        fmt.add_argument("--sarif", dest="fmt", action="store_const", const="sarif")
        fmt.add_argument("--cyclonedx", dest="fmt", action="store_const", const="cyclonedx")
        parser.add_argument(
            "--fail-on", choices=THRESHOLDS,
            help="exit 1 only for findings at least this severe (default: any open finding)",
        )
        parser.add_argument("--unknown-severity", choices=("fail", "ignore"), default="fail",
                            help="whether findings without a severity fail (default: fail)")
        parser.add_argument("--ignore-vuln", action="append", default=[], metavar="ID",
                            help="an advisory id or alias that does not fail the scan "
                                 "(still listed)")

    def handle(self, *args, name, all: bool, fmt, fail_on, unknown_severity="fail",
               ignore_vuln=(), **options):
        if bool(name) == bool(all):
            raise usage_error("give a project NAME or --all")
        projects = list(Project.objects.all()) if all else list(
            Project.objects.filter(name=name)
        )
        if not projects:
            raise usage_error(f"no project named {name!r}" if name else "no projects")
        if fmt in ("sarif", "cyclonedx") and len(projects) != 1:
            raise usage_error(f"--{fmt} describes one project; give its NAME")

        documents, all_findings = [], []
        for project in projects:
            try:
                result = project_scan(project=project)
            except ApplicationError as exc:
                raise usage_error(exc.message) from exc
            findings = findings_for_project(project_name=project.name)
            all_findings += findings
            documents.append((project, result, findings))

        if fmt == "json":
            self.stdout.write(json.dumps(
                {"findings": all_findings,
                 "projects": [_summary(p, r) for p, r, _ in documents]},
                indent=2, default=str,
            ))
        elif fmt == "sarif":
            from apps.inventory.reports import findings_to_sarif

            project, result, findings = documents[0]
            self.stdout.write(json.dumps(findings_to_sarif(
                findings, tool_version=VERSION, project_name=project.name, commit=result.commit,
                repository_uri=Path(project.path).as_uri(),
            ), indent=2))
        elif fmt == "cyclonedx":
            from apps.inventory.reports import findings_to_cyclonedx_vex

            project, _result, findings = documents[0]
            self.stdout.write(findings_to_cyclonedx_vex(
                findings, project_name=project.name, tool_version=VERSION
            ))
        else:
            for project, result, findings in documents:
                self._table(project, result, findings)

        # A reviewer's settled answer (risk accepted, false positive, fix applied) is reported
        # but does not fail the gate, as pip-audit's --ignore-vuln would not.
        gated = [f for f in all_findings if f.get("status") not in SETTLED]
        failing, _ignored = gate(gated, fail_on=fail_on,
                                 unknown_severity=unknown_severity, ignore=ignore_vuln)
        if failing:
            raise findings_error(
                f"{len(failing)} open finding(s) at or above {fail_on or 'any severity'}")

    def _table(self, project, result, findings):
        apvs = result.apvs
        self.stdout.write(self.style.MIGRATE_HEADING(
            f"{project.name} @ {result.commit[:12]}: {len(result.manifests)} manifest(s), "
            f"{result.dependencies} dependencies ({result.pinned} pinned)"
        ))
        for error in result.errors:
            self.stderr.write(f"  unparsed {error['manifest']}:{error['line']}: {error['reason']}")
        header = ("APV", "PACKAGE", "VERSION", "ADVISORY", "ALIASES", "SEVERITY", "CVSS",
                  "FIXED IN", "PRIO", "WHERE")
        rows = [header] + [
            (f["apv"], f["package"], f["version"], f["advisory"], ",".join(f["aliases"][:2]),
             f["severity"], "" if f["cvss_score"] is None else f"{f['cvss_score']:.1f}",
             ",".join(f["fixed_in"][:2]), str(f["priority"]),
             f"{f['manifest']}:{f['line'] or ''}")
            for f in findings
        ]
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
        for row in rows:
            self.stdout.write("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
        self.stdout.write(
            f"{len(findings)} open finding(s): {len(apvs.created)} new, {len(apvs.updated)} "
            f"updated, {len(apvs.resolved)} resolved"
        )


def _summary(project, result) -> dict:
    return {
        "project": project.name, "commit": result.commit, "manifests": result.manifests,
        "dependencies": result.dependencies, "pinned": result.pinned, "errors": result.errors,
        "apvs": {"created": len(result.apvs.created), "updated": len(result.apvs.updated),
                 "unchanged": len(result.apvs.unchanged),
                 "resolved": len(result.apvs.resolved)},
    }
