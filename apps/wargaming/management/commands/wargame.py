"""``manage.py wargame APV-CODE`` or ``wargame --package P --vulnerable V --fixed F``."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import ApplicationError
from apps.reviews.models import APV
from apps.wargaming.selectors import no_exploit_reason, run_covers
from apps.wargaming.services import wargame_execute, wargame_run_package, wargame_start

OUTPUT_LIMIT = 2000


class Command(BaseCommand):
    help = "Run a wargame in the foreground: for an APV's patch, or for a package pair."

    def add_arguments(self, parser):
        parser.add_argument("apv", nargs="?", help="APV code")
        parser.add_argument("--package")
        parser.add_argument("--vulnerable")
        parser.add_argument("--fixed")
        parser.add_argument("--exploit", help="a PoC file (default: the library's)")
        parser.add_argument("--with", dest="with_", action="append", default=[],
                            metavar="REQ", help="an extra requirement for both phases")
        parser.add_argument("--json", dest="as_json", action="store_true")

    def handle(self, *args, apv, package, vulnerable, fixed, exploit, with_, as_json, **kw):
        try:
            if apv:
                record = (APV.objects.select_related("current_patch").filter(code=apv).first())
                if record is None or record.current_patch is None:
                    raise CommandError(f"{apv}: no such APV, or it has no patch yet")
                run, _created = wargame_start(patch=record.current_patch, trigger="command")
                run = wargame_execute(run=run)
            else:
                if not (package and vulnerable and fixed):
                    raise CommandError("give an APV code, or --package, --vulnerable and --fixed")
                run = wargame_run_package(package=package, vulnerable=vulnerable, fixed=fixed,
                                          exploit_path=exploit, with_requirements=with_)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        phases = {p.name: {"outcome": p.outcome, "exit_code": p.exit_code,
                           "exploited": p.exploited, "duration_s": p.duration_s,
                           "evidence": p.evidence, "output": p.output[-OUTPUT_LIMIT:]}
                  for p in run.phases.all()}
        if as_json:
            self.stdout.write(json.dumps({
                "run": run.pk, "verdict": run.verdict, "confidence": run.confidence,
                "reason": run.reason, "exploit": run.exploit, "advisories": run.advisories,
                "network_isolated": run.network_isolated, **phases}, indent=2))
            return
        self.stdout.write(f"exploit: {run.exploit} (covers "
                          f"{', '.join(run.advisories) or 'no advisory'})")
        for name, phase in phases.items():
            self.stdout.write(f"  {name:<10} {phase['outcome']:<12} exit={phase['exit_code']} "
                              f"{phase['duration_s']}s")
        style = self.style.SUCCESS if run.verdict == "patch_effective" else self.style.WARNING
        self.stdout.write(style(f"verdict: {run.verdict} (confidence {run.confidence}) — "
                                f"{run.reason}"))
        if apv and not run_covers(run, record):
            self.stdout.write(self.style.WARNING(f"{apv}: {no_exploit_reason(run, record)}"))
