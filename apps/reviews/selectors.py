"""Reads on APVs: the filtered list, one APV, counts, and scan findings."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from packaging.utils import canonicalize_name

from apps.advisories.models import AdvisoryAlias
from apps.inventory.selectors import project_q
from apps.reviews.models import APV, APVStatus, Patch

#: Advisory columns a list of APVs never shows; a detail that needs one loads it then.
ADVISORY_BULK = ("advisory__raw", "advisory__details", "advisory__references",
                 "advisory__severity_vectors", "advisory__content_hash",
                 "advisory__source_path")


def _values(value: str | list[str]) -> list[str]:
    return [v for v in value.split(",") if v] if isinstance(value, str) else list(value)


def apv_list(
    *, project: str | list[str] = "", status: str | list[str] = "",
    severity: str | list[str] = "", package: str | list[str] = "", advisory: str = "",
    overdue: bool | None = None,
) -> QuerySet[APV]:
    """Filters take lists or comma-separated values (a project by id or name); everything
    a row shows is joined in one query."""
    # The advisory's bulky columns (the whole OSV record, its text) are no row's business:
    # loading and decoding them was most of a list page's cost (issue 12).
    qs = (APV.objects.select_related("project", "dependency", "advisory")
          .defer(*ADVISORY_BULK))
    if project:
        qs = qs.filter(project_q(_values(project), field="project"))
    if status:
        qs = qs.filter(status__in=_values(status))
    if severity:
        qs = qs.filter(severity__in=_values(severity))
    if package:
        # PEP 503 for PyPI; npm names keep their dots (lower-cased).
        names = {n for p in _values(package)
                 for n in (canonicalize_name(p.strip()), p.strip().lower().replace("_", "-"))}
        qs = qs.filter(dependency__normalised_name__in=sorted(names))
    if advisory:
        # A subquery, not a join on the alias rows: no duplicate rows, so no DISTINCT, which
        # made PostgreSQL de-duplicate every matching row on all selected columns before
        # taking a page (issue 12, docs/performance.md "Capacity under load").
        aliased = AdvisoryAlias.objects.filter(alias=advisory).values("advisory_id")
        qs = qs.filter(Q(advisory__osv_id=advisory) | Q(advisory_id__in=aliased))
    if overdue is not None:
        condition = Q(sla_due_at__lt=timezone.now()) & ~Q(status=APVStatus.RESOLVED)
        qs = qs.filter(condition) if overdue else qs.exclude(condition)
    return qs


def apv_get(*, code: str) -> APV | None:
    return apv_list().filter(code=code).first()


QUEUE_STATUSES = (APVStatus.PENDING_REVIEW, APVStatus.ESCALATED)


def queue_counts() -> dict:
    """Work waiting for a reviewer, by severity: the console's live counter."""
    rows = (APV.objects.filter(status__in=QUEUE_STATUSES).order_by().values_list("severity")
            .annotate(n=Count("id")))
    by_severity = dict(rows)
    return {"pending_by_severity": by_severity, "pending": sum(by_severity.values())}


def apv_stats(*, project: str = "") -> dict:
    qs = apv_list(project=project)
    by_status = dict(qs.order_by().values_list("status").annotate(n=Count("id")))
    open_qs = qs.exclude(status=APVStatus.RESOLVED)
    by_severity = dict(open_qs.order_by().values_list("severity").annotate(n=Count("id")))
    pending = dict(qs.filter(status__in=QUEUE_STATUSES).order_by().values_list("severity")
                   .annotate(n=Count("id")))
    return {
        "total": sum(by_status.values()),
        "pending_by_severity": pending,
        "by_status": {s: by_status.get(s, 0) for s in APVStatus.values},
        "by_severity": by_severity,
        "overdue": open_qs.filter(sla_due_at__lt=timezone.now()).count(),
    }


def apv_finding(apv: APV) -> dict:
    """One scan finding (the JSON, SARIF and VEX outputs of scan_project are built on it)."""
    advisory = apv.advisory
    return {
        "apv": apv.code,
        "package": apv.dependency.name,
        "version": apv.dependency.version,
        "ecosystem": apv.dependency.ecosystem,
        "manifest": apv.dependency.manifest_path,
        "line": apv.dependency.line,
        "advisory": advisory.osv_id,
        "aliases": list(advisory.aliases),
        "severity": apv.severity,
        "cvss_score": apv.cvss_score,
        "fixed_in": list(apv.fixed_in),
        "priority": apv.priority,
        "status": apv.status,
        "summary": advisory.summary,
        "cwe_ids": list(advisory.cwe_ids),
        "cvss_vector": advisory.cvss_vector,
        "references": [r.get("url") for r in advisory.references if r.get("url")][:5],
    }


def findings_for_project(*, project_name: str, include_resolved: bool = False) -> list[dict]:
    qs = apv_list(project=project_name).order_by("-priority", "dependency__normalised_name",
                                                  "advisory__osv_id")
    if not include_resolved:
        qs = qs.exclude(status=APVStatus.RESOLVED)
    return [apv_finding(apv) for apv in qs]


def patch_list(*, apv: str | list[str] = "", project: str | list[str] = "",
               state: str | list[str] = "", strategy: str | list[str] = "") -> QuerySet[Patch]:
    """Patches, newest first; filters as ``apv_list``'s (``apv``: codes of APVs covered)."""
    qs = Patch.objects.select_related("project").prefetch_related("apvs")
    if apv:
        qs = qs.filter(pk__in=Patch.apvs.through.objects.filter(
            apv__code__in=_values(apv)).values("patch_id"))
    if project:
        qs = qs.filter(project_q(_values(project), field="project"))
    if state:
        qs = qs.filter(state__in=_values(state))
    if strategy:
        qs = qs.filter(strategy__in=_values(strategy))
    return qs.order_by("-created_at", "-id")
