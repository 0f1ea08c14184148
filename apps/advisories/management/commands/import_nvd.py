"""``manage.py import_nvd SOURCE... [--json]``"""

from __future__ import annotations

from apps.advisories.management.evidence_command import EvidenceImportCommand
from apps.advisories.nvd.services import nvd_import


class Command(EvidenceImportCommand):
    feed = "nvd"
    several_files = True
    help = (
        "Import NVD's CVE JSON 2.0 data: the yearly and modified feeds "
        "(nvdcve-2.0-*.json, plain or .gz) and saved CVE API 2.0 responses. Stores each "
        "CVE's CVSS v4.0/v3.1/v3.0/v2 metrics, CWE ids, dates and CISA KEV mark; advisories "
        "without a CVSS score of their own take NVD's (through their CVE ids and aliases) and "
        "their APVs' severity, priority and SLA follow. A record that cannot be used is "
        "listed and skipped; a file that cannot be read whole stores nothing. Exits 0 when "
        "every file was read, 1 when one could not be."
    )

    def run_import(self, paths, on_progress):
        return nvd_import(paths=paths, on_progress=on_progress)
