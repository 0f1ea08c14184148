"""Advisory: one OSV record, stored whole (``raw``) plus the fields the spec names."""

from __future__ import annotations

from django.db import models

from apps.core.models import TimeStampedModel


class Severity(models.TextChoices):
    CRITICAL = "critical", "Critical"
    HIGH = "high", "High"
    MEDIUM = "medium", "Medium"
    LOW = "low", "Low"
    NONE = "none", "None"
    UNKNOWN = "unknown", "Unknown"


#: Most urgent first; used for ordering and for "at least this severe" filters.
SEVERITY_RANK = {"critical": 5, "high": 4, "medium": 3, "low": 2, "none": 1, "unknown": 0}


class Advisory(TimeStampedModel):
    osv_id = models.CharField("OSV id", max_length=200, unique=True)
    aliases = models.JSONField(default=list, blank=True, help_text="CVE, GHSA and other ids")
    summary = models.TextField(blank=True)
    details = models.TextField(blank=True)
    published = models.DateTimeField(null=True, blank=True)
    modified = models.DateTimeField(null=True, blank=True, db_index=True)
    withdrawn = models.DateTimeField(null=True, blank=True)
    severity = models.CharField(
        max_length=10, choices=Severity.choices, default=Severity.UNKNOWN, db_index=True
    )
    cvss_score = models.FloatField(null=True, blank=True, help_text="base score from the vector")
    cvss_vector = models.CharField(max_length=300, blank=True)
    severity_vectors = models.JSONField(default=list, blank=True)
    cwe_ids = models.JSONField(default=list, blank=True)
    references = models.JSONField(default=list, blank=True)
    source = models.CharField(max_length=200, db_index=True, help_text="the feed it came from")
    source_path = models.CharField(max_length=1000, blank=True)
    content_hash = models.CharField(max_length=64)
    raw = models.JSONField(help_text="the OSV record as imported")
    #: The OSV id whose severity (and score and vector) this advisory carries because it has
    #: none of its own (docs/advisories.md, "Severity across aliases"); blank when its own.
    severity_from = models.CharField(max_length=200, blank=True, default="")
    # Exploitation evidence, denormalised from the CVE rows below through the advisory's
    # id and aliases (apps/advisories/evidence.py); read by priority, SLA and notifications.
    kev_listed = models.BooleanField("CISA KEV", default=False, db_index=True)
    kev_date_added = models.DateField("added to KEV", null=True, blank=True)
    epss_score = models.FloatField("EPSS", null=True, blank=True)
    epss_percentile = models.FloatField("EPSS percentile", null=True, blank=True)

    class Meta:
        ordering = ["-modified", "osv_id"]
        verbose_name_plural = "advisories"

    def __str__(self) -> str:
        return self.osv_id

    @property
    def is_withdrawn(self) -> bool:
        return self.withdrawn is not None

    @property
    def fixed_versions(self) -> list[str]:
        seen: dict[str, None] = {}
        for affected in self.affected_packages.all():
            for version in affected.fixed_versions:
                seen.setdefault(version, None)
        return list(seen)


class AdvisoryAlias(models.Model):
    """One alias per row, so "find by CVE/GHSA" is an indexed lookup on every database."""

    advisory = models.ForeignKey(Advisory, on_delete=models.CASCADE, related_name="alias_rows")
    alias = models.CharField(max_length=200, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["advisory", "alias"], name="uniq_advisory_alias")
        ]

    def __str__(self) -> str:
        return self.alias


class AffectedPackage(models.Model):
    """One ``affected[]`` entry: the package, its ranges and explicit versions."""

    advisory = models.ForeignKey(
        Advisory, on_delete=models.CASCADE, related_name="affected_packages"
    )
    ecosystem = models.CharField(max_length=100)
    #: ecosystem case-folded, the lookup key together with ``normalised_name``
    ecosystem_key = models.CharField(max_length=100)
    name = models.CharField(max_length=300)
    normalised_name = models.CharField(max_length=300)
    purl = models.CharField(max_length=500, blank=True)
    ranges = models.JSONField(default=list, blank=True)
    versions = models.JSONField(default=list, blank=True)
    fixed_versions = models.JSONField(default=list, blank=True)
    #: Why a range of this entry cannot be ordered (a range event that is no version of the
    #: ecosystem, e.g. PyPI "0.2.0-n653"); that range is also marked ``"unparseable"`` in
    #: ``ranges``. Matching then uses ``versions``, or else treats every version of the
    #: package as possibly affected (docs/advisories.md).
    unparseable_reason = models.TextField(blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["ecosystem_key", "normalised_name"])]

    def __str__(self) -> str:
        return f"{self.ecosystem}/{self.name}"


class EpssScore(models.Model):
    """One CVE's row of FIRST's daily EPSS file (https://www.first.org/epss/data_stats)."""

    cve = models.CharField("CVE", max_length=50, unique=True)
    score = models.FloatField(help_text="probability of exploitation in the next 30 days")
    percentile = models.FloatField()
    score_date = models.DateField(null=True, blank=True)
    model_version = models.CharField(max_length=50, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "EPSS score"

    def __str__(self) -> str:
        return f"{self.cve}: {self.score}"


class KevEntry(models.Model):
    """One entry of CISA's Known Exploited Vulnerabilities catalog."""

    cve = models.CharField("CVE", max_length=50, unique=True)
    vendor_project = models.CharField(max_length=300, blank=True)
    product = models.CharField(max_length=300, blank=True)
    vulnerability_name = models.CharField(max_length=500, blank=True)
    date_added = models.DateField()
    short_description = models.TextField(blank=True)
    required_action = models.TextField(blank=True)
    due_date = models.DateField(null=True, blank=True)
    known_ransomware_campaign_use = models.CharField(max_length=50, blank=True)
    notes = models.TextField(blank=True)
    cwes = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "KEV entry"
        verbose_name_plural = "KEV entries"

    def __str__(self) -> str:
        return self.cve
