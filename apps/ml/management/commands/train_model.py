"""``manage.py train_model [--activate] [--json]``: train on every labelled wargame."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from apps.ml.errors import NotEnoughLabels
from apps.ml.services import labels_count, model_train


class Command(BaseCommand):
    help = ("Train the patch-validity model on the verdicts of finished wargames and store "
            "it as a new model version (active when none is, or with --activate).")

    def add_arguments(self, parser):
        parser.add_argument("--activate", action="store_true",
                            help="make the new version the active one")
        parser.add_argument("--json", dest="as_json", action="store_true")

    def handle(self, *args, activate: bool, as_json: bool, **options):
        counts = labels_count()
        if not as_json:
            self.stdout.write(f"labels: {counts['effective']} effective, "
                              f"{counts['not_effective']} not effective")
        try:
            version = model_train(trigger="command", activate=True if activate else None)
        except NotEnoughLabels as exc:
            raise CommandError(exc.message, returncode=2) from exc
        summary = model_summary(version)
        if as_json:
            self.stdout.write(json.dumps(summary, indent=2))
            return
        for candidate in version.candidates:
            mark = "*" if candidate["chosen"] else " "
            self.stdout.write(
                f" {mark} {candidate['algorithm']:<20} accuracy {candidate['accuracy']:.3f}  "
                f"F1 {candidate['f1']:.3f}  ROC AUC {_num(candidate['roc_auc'])}  "
                f"Brier {candidate['brier']:.3f}")
        self.stdout.write(self.style.SUCCESS(
            f"model v{version.version} ({version.algorithm}, {version.cv_folds}-fold CV on "
            f"{version.training_size} labels): accuracy {version.cv_accuracy:.3f}, precision "
            f"{version.cv_precision:.3f}, recall {version.cv_recall:.3f}, F1 "
            f"{version.cv_f1:.3f}, ROC AUC {_num(version.cv_roc_auc)}, Brier "
            f"{version.cv_brier:.3f}; {'active' if version.is_active else 'not active'}"))


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def model_summary(version) -> dict:
    return {
        "version": version.version, "algorithm": version.algorithm,
        "parameters": version.parameters, "training_size": version.training_size,
        "class_balance": version.class_balance, "cv_folds": version.cv_folds,
        "cv": {"accuracy": version.cv_accuracy, "precision": version.cv_precision,
               "recall": version.cv_recall, "f1": version.cv_f1,
               "roc_auc": version.cv_roc_auc, "brier": version.cv_brier},
        "candidates": version.candidates, "artifact_sha256": version.artifact_sha256,
        "trigger": version.trigger, "is_active": version.is_active,
    }
