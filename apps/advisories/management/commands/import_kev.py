"""``manage.py import_kev FILE [--json]``"""

from __future__ import annotations

from apps.advisories.evidence import kev_import
from apps.advisories.management.evidence_command import COMMON_HELP, EvidenceImportCommand


class Command(EvidenceImportCommand):
    feed = "kev"
    help = (
        "Import CISA's Known Exploited Vulnerabilities catalog "
        "(known_exploited_vulnerabilities.json); the file is the whole catalog: entries it "
        "no longer lists are removed. " + COMMON_HELP
    )

    def run_import(self, paths, on_progress):
        return kev_import(path=paths[0])
