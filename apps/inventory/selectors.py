"""Reads on projects: one addressed by id or by name, the same way everywhere."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Q

from apps.inventory.errors import ProjectNotFound
from apps.inventory.models import Project


def project_q(refs: Iterable[str] | str, *, field: str = "") -> Q:
    """Projects by id or by name (``"3"`` or ``"svc"``; a name made of digits is found by
    either); ``field`` is the path to the project from the model filtered (``"project"``
    for an APV, ``"apv__project"`` for a decision), empty for projects themselves."""
    if isinstance(refs, str):
        refs = [r for r in refs.split(",") if r]
    refs = [str(r).strip() for r in refs]
    prefix = f"{field}__" if field else ""
    ids = [int(r) for r in refs if r.isdigit() and len(r) < 12]
    return Q(**{f"{prefix}name__in": refs}) | Q(**{f"{prefix}pk__in": ids})


def project_get(*, ref: str) -> Project:
    """The project with this id or name; ProjectNotFound (404) when none."""
    ref = str(ref)
    project = None
    if ref.isdigit() and len(ref) < 12:
        project = Project.objects.filter(pk=int(ref)).first()
    if project is None:
        project = Project.objects.filter(name=ref).first()
    if project is None:
        raise ProjectNotFound(f"No project {ref}.", details={"project": ref})
    return project
