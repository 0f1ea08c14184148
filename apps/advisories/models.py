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


class CvssSource(models.TextChoices):
    OSV = "", "OSV record"
    NVD = "nvd", "NVD"


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
    #: Where ``severity``, ``cvss_score`` and ``cvss_vector`` come from when they are not the
    #: advisory's own (docs/advisories.md, "Severity across aliases" and docs/nvd.md): the
    #: OSV id of a twin advisory, or (``cvss_source == "nvd"``) the CVE id whose NVD record
    #: scored it; blank when they are its own.
    severity_from = models.CharField(max_length=200, blank=True, default="")
    #: The severity its own OSV record gives (from its vectors, else GHSA's
    #: database_specific.severity, else unknown), kept so it comes back when a carried one
    #: goes away.
    own_severity = models.CharField(
        max_length=10, choices=Severity.choices, default=Severity.UNKNOWN)
    #: "nvd" when the CVSS score, vector and severity are NVD's (the advisory has no CVSS of
    #: its own); blank when they come from OSV records (its own, or its twin's).
    cvss_source = models.CharField(max_length=10, choices=CvssSource.choices, blank=True,
                                   default=CvssSource.OSV, db_index=True)
    #: Who scored it at NVD (the metric's ``source``: nvd@nist.gov, a CNA's address) and
    #: whether NVD lists that metric as "Primary" or "Secondary"; blank unless from NVD.
    nvd_metric_source = models.CharField(max_length=200, blank=True, default="")
    nvd_metric_type = models.CharField(max_length=10, blank=True, default="")
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


class NvdCve(models.Model):
    """One CVE as NVD publishes it (CVE API 2.0 and the JSON 2.0 feeds; docs/nvd.md): the
    parts immune uses, refreshed by ``import_nvd`` and the NVD beat job."""

    cve = models.CharField("CVE", max_length=50, unique=True)
    #: The CNA that published the CVE (``sourceIdentifier``).
    source_identifier = models.CharField(max_length=200, blank=True)
    #: NVD's ``vulnStatus``: Received, Awaiting Analysis, Undergoing Analysis, Analyzed,
    #: Modified, Deferred, Rejected. A rejected CVE's metrics are never used.
    vuln_status = models.CharField(max_length=50, blank=True, db_index=True)
    published = models.DateTimeField(null=True, blank=True)
    last_modified = models.DateTimeField(null=True, blank=True, db_index=True)
    #: Every CVSS metric NVD lists, newest version first, in NVD's order within a version:
    #: ``{"version": "4.0"|"3.1"|"3.0"|"2.0", "vector", "base_score", "base_severity",
    #: "source", "type": "Primary"|"Secondary"}``.
    metrics = models.JSONField(default=list, blank=True)
    cwe_ids = models.JSONField(default=list, blank=True)
    #: NVD's copy of CISA KEV (``cisaExploitAdd``, ``cisaActionDue``, ...): set when NVD
    #: marks the CVE as known exploited.
    kev_date_added = models.DateField("CISA KEV added", null=True, blank=True)
    kev_action_due = models.DateField(null=True, blank=True)
    kev_required_action = models.TextField(blank=True)
    kev_vulnerability_name = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "NVD CVE"
        verbose_name_plural = "NVD CVEs"

    def __str__(self) -> str:
        return self.cve

    @property
    def rejected(self) -> bool:
        return self.vuln_status == "Rejected"


class NvdSyncState(models.Model):
    """How far the NVD beat job has synced (docs/nvd.md): the end of the last
    ``lastModified`` window of the CVE API imported whole."""

    name = models.CharField(max_length=50, unique=True)
    synced_through = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.synced_through}"
