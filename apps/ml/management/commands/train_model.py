"""``manage.py train_model [--corpus FILE] [--activate] [--json]``: train on every labelled
wargame (patch runs, and the wargame corpus: an exported file, or the stored corpus runs)."""

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
        parser.add_argument("--corpus", metavar="FILE",
                            help="the wargame corpus as JSON lines (data/corpus/wargames.jsonl) "
                            "instead of the corpus runs stored in this database")
        parser.add_argument("--json", dest="as_json", action="store_true")

    def handle(self, *args, activate: bool, as_json: bool, corpus: str | None, **options):
        counts = labels_count()
        if not as_json:
            self.stdout.write(f"labels: {counts['effective']} effective, "
                              f"{counts['not_effective']} not effective")
        try:
            version = model_train(trigger="command", activate=True if activate else None,
                                  corpus=corpus)
        except NotEnoughLabels as exc:
            raise CommandError(exc.message, returncode=2) from exc
        except (OSError, ValueError) as exc:
            raise CommandError(f"the corpus could not be read: {exc}", returncode=2) from exc
        summary = model_summary(version)
        if as_json:
            self.stdout.write(json.dumps(summary, indent=2))
            return
        sources = version.training_sources
        if "corpus" in sources:
            skipped = "; ".join(f"{n} {why}" for why, n in sources["corpus_skipped"].items())
            self.stdout.write(f"corpus ({sources['corpus']}): {sources['corpus_labels']} of "
                              f"{sources['corpus_rows']} rows are labels"
                              + (f" (left out: {skipped})" if skipped else ""))
        for candidate in version.candidates:
            mark = "*" if candidate["chosen"] else " "
            grouped = candidate.get("grouped")
            self.stdout.write(
                f" {mark} {candidate['algorithm']:<20} accuracy {candidate['accuracy']:.3f}  "
                f"F1 {candidate['f1']:.3f}  ROC AUC {_num(candidate['roc_auc'])}  "
                f"Brier {candidate['brier']:.3f}"
                + (f"  | leave-one-package-out accuracy {grouped['accuracy']:.3f} Brier "
                   f"{grouped['brier']:.3f}" if grouped else ""))
        grouped = (version.evaluation or {}).get("grouped")
        if grouped:
            low, high = grouped["accuracy_ci95"]
            self.stdout.write(
                f"leave one package out ({grouped['packages']} packages, {grouped['n']} "
                f"labels): accuracy {grouped['accuracy']:.3f} (95 % CI {low:.3f}–{high:.3f}), "
                f"Brier {grouped['brier']:.3f}")
            for row in grouped["per_package"]:
                low, high = row["accuracy_ci95"]
                self.stdout.write(
                    f"   {row['package']:<22} n={row['n']:<4} accuracy {row['accuracy']:.3f} "
                    f"({low:.2f}–{high:.2f})  Brier {row['brier']:.3f}")
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
        "grouped": {"accuracy": version.grouped_accuracy, "brier": version.grouped_brier},
        "evaluation": version.evaluation, "training_packages": version.training_packages,
        "training_sources": version.training_sources, "feature_set": version.feature_set,
        "candidates": version.candidates, "artifact_sha256": version.artifact_sha256,
        "trigger": version.trigger, "is_active": version.is_active,
    }
