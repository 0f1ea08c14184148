"""Project (a git working copy) and Dependency (one package version in one manifest)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.core.models import TimeStampedModel


class ScanStatus(models.TextChoices):
    """How the last scan attempt ended (docs/apv.md, "Hostile repositories")."""

    OK = "ok", "ok"
    PARTIAL = "partial", "partial (see errors)"
    FAILED = "failed", "failed (nothing scanned)"


class Project(TimeStampedModel):
    name = models.CharField(max_length=200, unique=True)
    path = models.CharField(max_length=1000, help_text="path of the git working copy")
    default_branch = models.CharField(max_length=200, default="main")
    description = models.TextField(blank=True)
    last_scanned_at = models.DateTimeField(null=True, blank=True)
    last_scanned_commit = models.CharField(max_length=64, blank=True)
    #: GitHub "owner/name": with GITHUB_TOKEN set, patches become pull requests there.
    forge_repository = models.CharField(max_length=200, blank=True)
    #: Where branches are pushed (default https://github.com/<forge_repository>.git).
    forge_push_url = models.CharField(max_length=1000, blank=True)
    #: How to start the project's own service for HTTP wargames, e.g.
    #: "python service/app.py --port {port}", and the path that answers 200 when ready.
    service_command = models.CharField(max_length=1000, blank=True)
    service_ready_path = models.CharField(max_length=300, blank=True, default="/health")
    #: The project's test command, run on the patched code as the regression phase.
    test_command = models.CharField(max_length=1000, blank=True)
    #: What the last scan attempt could not read: [{manifest, line, reason, stage}], stage
    #: "repository" (nothing scanned), "tree" (an entry not exported) or "manifest".
    last_scan_errors = models.JSONField(default=list, blank=True)
    #: The last scan attempt, successful or not (``last_scanned_at``: the last one that ran).
    last_scan_status = models.CharField(max_length=20, choices=ScanStatus.choices, blank=True)
    last_scan_attempted_at = models.DateTimeField(null=True, blank=True)
    #: Glob patterns on manifest paths relative to the repository root (``**`` spans
    #: folders; apps/inventory/manifests/globs.py): when any include pattern is set only
    #: matching manifests are read; a manifest matching an exclude pattern is never read.
    manifest_include = models.JSONField(
        default=list, blank=True,
        help_text="read only manifests matching one of these globs (empty: all)")
    manifest_exclude = models.JSONField(
        default=list, blank=True,
        help_text="never read manifests matching one of these globs, e.g. tests/**")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Dependency(TimeStampedModel):
    """A package a project's manifest declares or locks.

    Rows are kept when a rescan no longer finds them (``present=False``) so the APVs
    that point at them keep their history and can be resolved, not deleted.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="dependencies")
    ecosystem = models.CharField(max_length=50)
    name = models.CharField(max_length=300)
    normalised_name = models.CharField(max_length=300)
    version = models.CharField(max_length=200, blank=True, help_text="empty when not pinned")
    specifier = models.CharField(max_length=500, blank=True)
    manifest_path = models.CharField(max_length=1000)
    line = models.PositiveIntegerField(null=True, blank=True)
    direct = models.BooleanField(default=True)
    extras = models.JSONField(default=list, blank=True)
    marker = models.CharField(max_length=500, blank=True)
    hashes = models.JSONField(default=list, blank=True)
    present = models.BooleanField(default=True, db_index=True)

    class Meta:
        verbose_name_plural = "dependencies"
        ordering = ["project", "normalised_name", "manifest_path"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "manifest_path", "ecosystem", "normalised_name", "version"],
                name="uniq_dependency_per_manifest",
            )
        ]
        indexes = [models.Index(fields=["ecosystem", "normalised_name"])]

    def __str__(self) -> str:
        return f"{self.name}=={self.version}" if self.version else self.name

    @property
    def pinned(self) -> bool:
        return bool(self.version)
