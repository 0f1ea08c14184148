"""Reads on advisories, including the index a scan matches dependencies against."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.db.models import Prefetch, Q, QuerySet

from apps.advisories import osv
from apps.advisories.models import Advisory, AdvisoryAlias, AffectedPackage

_NAME_CHUNK = 500  # keeps IN (...) lists well under every database's parameter limit


def advisory_list(
    *, package: str = "", ecosystem: str = "", severity: str = "", alias: str = "",
    search: str = "", include_withdrawn: bool = True,
) -> QuerySet[Advisory]:
    qs = Advisory.objects.all()
    if package:
        qs = qs.filter(
            affected_packages__normalised_name=osv.normalise_name(ecosystem or "PyPI", package)
        )
    if ecosystem:
        qs = qs.filter(affected_packages__ecosystem_key=ecosystem.strip().casefold())
    if severity:
        qs = qs.filter(severity__in=[s.strip() for s in severity.split(",")])
    if alias:
        qs = qs.filter(Q(alias_rows__alias=alias) | Q(osv_id=alias))
    if search:
        qs = qs.filter(
            Q(osv_id__icontains=search) | Q(alias_rows__alias__iexact=search)
            | Q(summary__icontains=search) | Q(affected_packages__normalised_name=search.lower())
        )
    if not include_withdrawn:
        qs = qs.filter(withdrawn__isnull=True)
    return qs.distinct().prefetch_related(
        Prefetch("affected_packages", queryset=AffectedPackage.objects.order_by("id"))
    )


def advisory_get(*, osv_id: str) -> Advisory | None:
    advisory = advisory_list().filter(osv_id=osv_id).first()
    if advisory is None:
        alias = AdvisoryAlias.objects.filter(alias=osv_id).select_related("advisory").first()
        advisory = alias.advisory if alias else None
    return advisory


def _record(row: AffectedPackage) -> osv.AffectedPackage:
    """The ORM row as the matcher's value object (ranges rebuilt from the stored JSON)."""
    ranges = tuple(
        osv.Range(
            type=r["type"],
            events=tuple(next(iter(e.items())) for e in r["events"]),
            repo=r.get("repo", ""),
            unparseable=r.get("unparseable", ""),
        )
        for r in row.ranges
    )
    return osv.AffectedPackage(
        ecosystem=row.ecosystem, name=row.name, normalised_name=row.normalised_name,
        purl=row.purl, ranges=ranges, versions=tuple(row.versions),
    )


class AffectedIndex:
    """Affected entries of live (not withdrawn) advisories by (ecosystem, normalised name).

    Built for the names a scan needs only, so matching costs one look-up per dependency
    plus the range checks of that package's advisories: never quadratic.
    """

    def __init__(self, keys: Iterable[tuple[str, str]]):
        wanted = {(eco.strip().casefold(), name) for eco, name in keys}
        names = sorted({name for _, name in wanted})
        self._entries: dict[tuple[str, str], list[tuple[Advisory, osv.AffectedPackage]]] = (
            defaultdict(list)
        )
        advisories: dict[int, Advisory] = {}
        for start in range(0, len(names), _NAME_CHUNK):
            rows = AffectedPackage.objects.filter(
                normalised_name__in=names[start:start + _NAME_CHUNK],
                advisory__withdrawn__isnull=True,
            ).select_related("advisory")
            for row in rows:
                key = (row.ecosystem_key, row.normalised_name)
                if key in wanted:
                    advisory = advisories.setdefault(row.advisory_id, row.advisory)
                    self._entries[key].append((advisory, _record(row)))

    def entries(self, ecosystem: str, normalised_name: str
                ) -> list[tuple[Advisory, osv.AffectedPackage]]:
        """Every live advisory entry of the package, affecting any version."""
        return list(self._entries.get((ecosystem.strip().casefold(), normalised_name), ()))

    def matches(
        self, ecosystem: str, normalised_name: str, version: str
    ) -> list[tuple[Advisory, tuple[str, ...]]]:
        """(advisory, fixed versions lowest first) for each advisory affecting the version.

        Includes the advisories that *possibly* affect it (a range that cannot be ordered and
        no `versions` list): a scan raises an APV for those too, and
        `advisory_match_reason` says why on the APV.
        """
        found: dict[int, tuple[Advisory, tuple[str, ...]]] = {}
        for advisory, affected in self._entries.get(
            (ecosystem.strip().casefold(), normalised_name), ()
        ):
            if osv.is_affected(affected, version) or osv.possibly_affected(affected, version):
                # One advisory may list the package in several entries: merge their fixes.
                _, fixed = found.get(advisory.pk, (advisory, ()))
                merged = tuple(dict.fromkeys((*fixed, *osv.fixed_versions_for(affected))))
                found[advisory.pk] = (advisory, merged)
        return list(found.values())


def advisory_match_reason(
    *, advisory: Advisory, ecosystem: str, normalised_name: str, version: str
) -> str:
    """Why `advisory` matches this package version when the match is not certain; "" when it
    is (listed in `versions` or inside a range), or when it does not match at all.

    Derived from the stored entries each time, so it follows the advisory when it changes.
    """
    rows = AffectedPackage.objects.filter(
        advisory=advisory, ecosystem_key=ecosystem.strip().casefold(),
        normalised_name=normalised_name,
    )
    entries = [_record(row) for row in rows]
    if any(osv.is_affected(entry, version) for entry in entries):
        return ""
    return next((reason for entry in entries
                 if (reason := osv.possibly_affected(entry, version))), "")
