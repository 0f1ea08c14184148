"""``manage.py propose_patches [--project NAME] [--json]``"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from apps.inventory.models import Project
from apps.reviews.services.patches import patches_propose


class Command(BaseCommand):
    help = "Propose a patch for every open APV (one upgrade per package per project)."

    def add_arguments(self, parser):
        parser.add_argument("--project", default="")
        parser.add_argument("--json", dest="as_json", action="store_true")

    def handle(self, *args, project: str, as_json: bool, **options):
        target = None
        if project:
            target = Project.objects.filter(name=project).first()
            if target is None:
                raise CommandError(f"no project named {project!r}")
        report = patches_propose(project=target)
        rows = [
            {"patch": p.pk, "strategy": p.strategy, "revision": p.revision,
             "package": p.package, "from": p.from_version, "to": p.target_version,
             "branch": p.branch, "apvs": sorted(a.code for a in p.apvs.all()),
             "notes": p.notes}
            for p in [*report.proposed, *report.manual]
        ]
        if as_json:
            self.stdout.write(json.dumps({"patches": rows, "failed": report.failed}, indent=2))
        else:
            for row in rows:
                where = row["branch"] or "manual (no branch)"
                self.stdout.write(f"{row['package']} {row['from']} → {row['to'] or '?'}  "
                                  f"[{row['strategy']}] {where}  {', '.join(row['apvs'])}")
                if row["strategy"] == "manual":
                    self.stdout.write(f"    {row['notes'][-1]}")
            for codes, reason in report.failed:
                self.stderr.write(f"FAILED {codes}: {reason}")
            self.stdout.write(f"{len(report.proposed)} upgrade patch(es), "
                              f"{len(report.manual)} manual, {len(report.failed)} failed")
        if report.failed:
            raise CommandError(f"{len(report.failed)} patch proposal(s) failed", returncode=1)
