"""What inventory announces to the apps above it (docs/architecture.md, "Hooks")."""

from __future__ import annotations

from dataclasses import dataclass

from apps.advisories.models import Advisory
from apps.core.hooks import Hook
from apps.inventory.models import Dependency


@dataclass(frozen=True)
class Exposure:
    """One match found by a scan: this dependency is affected by this advisory."""

    dependency: Dependency
    advisory: Advisory
    fixed_in: tuple[str, ...]


#: A scan stored a project's dependencies. Called inside the scan's transaction with
#: ``project`` and ``exposures`` (every Exposure the scan found); reviews makes the APVs
#: match and answers with its SyncResult, which the scan reports. One subscriber.
dependencies_scanned = Hook("inventory.dependencies_scanned", single=True)
