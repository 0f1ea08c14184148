"""``manage.py import_epss FILE [--json]``"""

from __future__ import annotations

from apps.advisories.evidence import epss_import
from apps.advisories.management.evidence_command import COMMON_HELP, EvidenceImportCommand


class Command(EvidenceImportCommand):
    feed = "epss"
    help = (
        "Import FIRST's daily EPSS scores (epss_scores-YYYY-MM-DD.csv, plain or .gz, "
        "with its #model_version comment line). " + COMMON_HELP
    )

    def run_import(self, paths, on_progress):
        return epss_import(path=paths[0])
