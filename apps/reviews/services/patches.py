"""Proposing patches: an upgrade per (project, package), or a submitted code diff.

Git work (a branch ``immune/<apv-code>-r<revision>`` committed in a temporary worktree)
happens before the database transaction; if the transaction fails the branch is deleted
again, so the repository and the database never disagree about a patch.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.realtime import send_event_on_commit
from apps.inventory.git import GitError, check_working_copy, file_at
from apps.inventory.models import Project
from apps.reviews.errors import PatchConflict, PatchInvalid
from apps.reviews.hooks import patch_proposed, routing_active
from apps.reviews.models import APV, APVStatus, Patch, PatchState, PatchStrategy
from apps.reviews.patching.branches import apply_check, commit_on_branch, delete_branch
from apps.reviews.patching.manifest_edit import ManualPatchRequired, upgrade_pin
from apps.reviews.patching.releases import target_version_check
from apps.reviews.patching.upgrade import choose_upgrade
from apps.reviews.services.apvs import apv_payload, stats_push_on_commit

log = structlog.get_logger(__name__)

#: APVs that may receive a new patch revision.
PROPOSABLE = (APVStatus.OPEN, APVStatus.CHANGES_REQUESTED)


@dataclass
class ProposeReport:
    proposed: list[Patch] = field(default_factory=list)
    manual: list[Patch] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (apv codes, reason)


def _next_revision(apvs: list[APV]) -> int:
    latest = Patch.objects.filter(apvs__in=apvs).order_by("-revision").first()
    return (latest.revision + 1) if latest else 1


def _branch_name(apvs: list[APV], revision: int) -> str:
    return f"immune/{min(a.code for a in apvs)}-r{revision}"


def _upgrade_files(project: Project, base: str, apvs: list[APV], target: str):
    """New text of each manifest declaring the package, plus notes; or ManualPatchRequired."""
    files: dict[str, str] = {}
    notes: list[str] = []
    deps = {apv.dependency_id: apv.dependency for apv in apvs}
    for dep in sorted(deps.values(), key=lambda d: (d.manifest_path, d.line or 0)):
        try:
            text = files.get(dep.manifest_path) or file_at(project.path, base,
                                                            dep.manifest_path)
        except GitError as exc:
            raise ManualPatchRequired(f"{dep.manifest_path} is not in {base[:12]}: {exc}") \
                from exc
        edit = upgrade_pin(text=text, manifest_path=dep.manifest_path,
                           package=dep.normalised_name, old_version=dep.version,
                           new_version=target, line=dep.line)
        files[dep.manifest_path] = edit.text
        notes += edit.notes
    return files, notes


def _commit_message(title: str, apvs: list[APV]) -> str:
    lines = [title, ""]
    for apv in sorted(apvs, key=lambda a: a.code):
        aliases = ", ".join(apv.advisory.aliases[:2])
        lines.append(f"- {apv.code}: {apv.advisory.osv_id}" + (f" ({aliases})" if aliases else ""))
    return "\n".join(lines) + "\n\nProposed by immune; merged only after a reviewer approves.\n"


def patch_propose_upgrade(
    *, apvs: list[APV], target_version: str | None = None, created_by=None,
) -> Patch:
    """One ``dependency_upgrade`` (or ``manual``) patch for APVs of one package."""
    project = apvs[0].project
    dependency = apvs[0].dependency
    versions = sorted({a.dependency.version for a in apvs})
    notes: list[str] = []
    if target_version:
        check = target_version_check(ecosystem=dependency.ecosystem,
                                     package=dependency.normalised_name, pinned=versions,
                                     target=target_version)
        if check.problem:
            raise PatchInvalid(check.problem, details={"target_version": [check.problem]})
        target, risk = target_version, "medium"
        notes += [f"target {target_version} chosen by {created_by or 'a reviewer'}",
                  check.note]
    else:
        choice = choose_upgrade(ecosystem=dependency.ecosystem,
                                package=dependency.normalised_name, current_versions=versions)
        target, risk = choice.target, choice.risk_level
        notes.append(choice.reason)
    revision = _next_revision(apvs)
    title = (f"Upgrade {dependency.name} {', '.join(versions)} → {target}" if target
             else f"Manual fix needed for {dependency.name} {', '.join(versions)}")
    fields = {"project": project, "revision": revision, "ecosystem": dependency.ecosystem,
              "package": dependency.normalised_name, "from_version": ", ".join(versions),
              "target_version": target or "", "risk_level": risk, "created_by": created_by}
    if target is None:
        return _save(apvs, Patch(strategy=PatchStrategy.MANUAL, title=title, notes=notes,
                                 **fields))
    try:
        base = check_working_copy(project.path, project.default_branch)
        files, edit_notes = _upgrade_files(project, base, apvs, target)
    except ManualPatchRequired as exc:
        return _save(apvs, Patch(strategy=PatchStrategy.MANUAL, notes=[*notes, exc.reason],
                                 title=f"Manual upgrade of {dependency.name} to {target}",
                                 **fields))
    except GitError as exc:
        raise PatchInvalid(f"Cannot read {project.name}: {exc}") from exc
    branch = _branch_name(apvs, revision)
    try:
        commit, diff = commit_on_branch(repo=project.path, base_commit=base, branch=branch,
                                        message=_commit_message(title, apvs), files=files)
    except GitError as exc:
        raise PatchConflict(f"Cannot commit {branch}: {exc}") from exc
    patch = Patch(strategy=PatchStrategy.DEPENDENCY_UPGRADE, title=title,
                  notes=[*notes, *edit_notes], diff=diff, base_commit=base, branch=branch,
                  commit_sha=commit, **fields)
    return _save(apvs, patch, created_branch=True)


def patch_propose(*, apv: APV, strategy: str, target_version: str = "", diff: str = "",
                  title: str = "", created_by=None) -> Patch:
    """A new revision for ``apv`` as a reviewer or a client asks for it (REST).

    An upgrade is per package: it covers the APV, the other APVs its current revision
    covers, and the project's other proposable APVs of the package, so a shared revision is
    replaced as a whole and no APV is left on a superseded one. A code patch is the APV's
    own (its siblings keep the revision they share)."""
    if apv.status not in PROPOSABLE and apv.status != APVStatus.PENDING_REVIEW:
        raise PatchConflict(f"{apv.code} is {apv.status}; a patch cannot be proposed now.",
                            details={"status": apv.status})
    if strategy == PatchStrategy.CODE_PATCH:
        return patch_submit_code(apv=apv, diff=diff, title=title, created_by=created_by)
    if strategy != PatchStrategy.DEPENDENCY_UPGRADE:
        raise PatchInvalid(f"Only {PatchStrategy.DEPENDENCY_UPGRADE} and "
                           f"{PatchStrategy.CODE_PATCH} revisions can be proposed.",
                           details={"strategy": [f"{strategy!r} cannot be proposed"]})
    allowed = {*PROPOSABLE, APVStatus.PENDING_REVIEW}
    same_package = APV.objects.filter(
        project_id=apv.project_id,
        dependency__ecosystem=apv.dependency.ecosystem,
        dependency__normalised_name=apv.dependency.normalised_name, status__in=PROPOSABLE)
    sharing = (APV.objects.filter(current_patch_id=apv.current_patch_id, status__in=allowed)
               if apv.current_patch_id else APV.objects.none())
    apvs = list((same_package | sharing | APV.objects.filter(pk=apv.pk)).distinct()
                .select_related("project", "dependency", "advisory").order_by("code"))
    return patch_propose_upgrade(apvs=apvs, target_version=target_version or None,
                                 created_by=created_by)


def patch_submit_code(*, apv: APV, diff: str, title: str = "", created_by=None) -> Patch:
    """A ``code_patch``: a unified diff that must apply to the default branch as it is."""
    if apv.status not in PROPOSABLE and apv.status != APVStatus.PENDING_REVIEW:
        raise PatchConflict(f"{apv.code} is {apv.status}; a patch cannot be submitted now")
    if not diff.strip():
        raise PatchInvalid("The diff is empty.", details={"diff": "required"})
    project = apv.project
    try:
        base = check_working_copy(project.path, project.default_branch)
        apply_check(project.path, base, diff)
    except GitError as exc:
        raise PatchInvalid(f"The diff does not apply to {project.default_branch}: {exc}",
                           details={"diff": str(exc)}) from exc
    revision = _next_revision([apv])
    branch = _branch_name([apv], revision)
    title = title or f"Code fix for {apv.advisory.osv_id} in {project.name}"
    try:
        commit, stored_diff = commit_on_branch(repo=project.path, base_commit=base,
                                               branch=branch, diff=diff,
                                               message=_commit_message(title, [apv]))
    except GitError as exc:
        raise PatchConflict(f"Cannot commit {branch}: {exc}") from exc
    patch = Patch(project=project, strategy=PatchStrategy.CODE_PATCH, revision=revision,
                  ecosystem=apv.dependency.ecosystem, package=apv.dependency.normalised_name,
                  from_version=apv.dependency.version, risk_level="medium", title=title,
                  diff=stored_diff, base_commit=base, branch=branch, commit_sha=commit,
                  created_by=created_by, notes=[f"submitted by {created_by}"] if created_by
                  else [])
    return _save([apv], patch, created_branch=True)


def _save(apvs: list[APV], patch: Patch, *, created_branch: bool = False) -> Patch:
    try:
        with transaction.atomic():
            locked = list(APV.objects.select_for_update().filter(pk__in=[a.pk for a in apvs])
                          .select_related("project", "dependency", "advisory"))
            allowed = {*PROPOSABLE, APVStatus.PENDING_REVIEW}
            if any(a.status not in allowed for a in locked):
                raise PatchConflict("An APV changed while its patch was being made: "
                                    + ", ".join(f"{a.code} is {a.status}" for a in locked))
            previous = set(Patch.objects.filter(apvs__in=locked, state=PatchState.PROPOSED)
                           .values_list("pk", flat=True))
            patch.save()
            patch.apvs.set(locked)
            now = timezone.now()
            # ML-first routes every proposal once a model is active, and WARGAME_AUTO does
            # so without one (then every patch is wargamed): open → patch_proposed, then
            # pending_review (route ml) or validating → pending_review (route wargame).
            # Otherwise straight to pending_review; a wargame can still be asked for.
            auto = patch.strategy != PatchStrategy.MANUAL and (
                settings.WARGAME_AUTO or any(routing_active()))
            for apv in locked:
                apv.status = APVStatus.PATCH_PROPOSED if auto else APVStatus.PENDING_REVIEW
                apv.current_patch = patch
                apv.pending_review_at = None if auto else now
                apv.save(update_fields=["status", "current_patch", "pending_review_at",
                                        "updated_at"])
                send_event_on_commit("apvs", "apv.updated", apv_payload(apv))
            _supersede(previous)
            stats_push_on_commit()
            if auto:
                patch_proposed(patch=patch, trigger="proposal")
    except Exception:
        if created_branch:
            try:
                delete_branch(repo=patch.project.path, branch=patch.branch)
            except GitError:
                log.warning("patch.branch_cleanup_failed", branch=patch.branch)
        raise
    _open_pull_request(patch)
    log.info("patch.proposed", patch=patch.pk, strategy=patch.strategy, branch=patch.branch,
             apvs=[a.code for a in apvs])
    return patch


def _supersede(patch_ids: set[int]) -> None:
    """The revisions these APVs left are superseded, unless another APV still has one as
    its current patch (a code patch for one APV of a shared upgrade): one current revision
    per APV, and never a superseded one (a decision names the current revision)."""
    still_current = APV.objects.filter(current_patch_id__in=patch_ids).values("current_patch_id")
    (Patch.objects.filter(pk__in=patch_ids, state=PatchState.PROPOSED)
     .exclude(pk__in=still_current)
     .update(state=PatchState.SUPERSEDED, updated_at=timezone.now()))


def _open_pull_request(patch: Patch) -> None:
    """With a forge configured, push the branch and open a pull request (best effort: the
    local branch stays the source of truth, a failure is noted on the patch)."""
    from apps.reviews.forge.adapter import github_forge_for

    forge = github_forge_for(patch.project)
    if forge is None or not patch.branch:
        return
    body = "\n".join([patch.title, "", *patch.notes, "", "Proposed by immune."])
    try:
        pr = forge.open_pull_request(repo_path=patch.project.path, branch=patch.branch,
                                     base=patch.project.default_branch, title=patch.title,
                                     body=body)
    except Exception as exc:
        patch.notes = [*patch.notes, f"forge: pull request not opened: {exc}"]
        patch.save(update_fields=["notes", "updated_at"])
        return
    patch.forge_pr_number, patch.forge_pr_url = pr.number, pr.url
    patch.save(update_fields=["forge_pr_number", "forge_pr_url", "updated_at"])


def patches_propose(*, project: Project | None = None) -> ProposeReport:
    """A patch for every ``open`` APV; APVs of one package in one project share one."""
    qs = APV.objects.filter(status=APVStatus.OPEN).select_related(
        "project", "dependency", "advisory")
    if project is not None:
        qs = qs.filter(project=project)
    groups: dict[tuple, list[APV]] = defaultdict(list)
    for apv in qs.order_by("code"):
        groups[(apv.project_id, apv.dependency.ecosystem, apv.dependency.normalised_name)] \
            .append(apv)
    report = ProposeReport()
    for apvs in groups.values():
        try:
            patch = patch_propose_upgrade(apvs=apvs)
        except (PatchInvalid, PatchConflict) as exc:
            report.failed.append((", ".join(a.code for a in apvs), exc.message))
            continue
        (report.manual if patch.strategy == PatchStrategy.MANUAL else report.proposed) \
            .append(patch)
    return report
