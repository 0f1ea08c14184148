"""Training and cross-validating the patch-validity model (pure scikit-learn, no ORM).

Two candidate algorithms are cross-validated on the same folds, twice: stratified folds
(how the model does on patches like those it has seen) and, when the labels span at least
``MIN_GROUPS`` packages, leave one package out (how it does on a package it never saw: the
case that matters in production, docs/ml.md "Evaluation"). Both candidates are wrapped in a
sigmoid-calibrated classifier, because routing compares the probability with a threshold
and so needs probabilities that mean what they say. The winner is the one with the lowest
Brier score (it rewards calibration and discrimination at once) — the grouped one when
there is one; on a tie the simpler logistic regression is kept. A random forest was tried
and dropped: evaluating its trees per call cost too much for the 5 ms latency aim.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import LeaveOneGroupOut, StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from apps.ml.stats import (
    brier_interval,
    calibration_bins,
    expected_calibration_error,
    wilson_interval,
)

SEED = 0
#: Leave-one-package-out needs this many packages among the labels to mean anything.
MIN_GROUPS = 3

#: name → (estimator factory, the parameters recorded on the model version)
CANDIDATES: dict[str, tuple[Callable, dict]] = {
    "logistic_regression": (
        lambda: LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced"),
        {"C": 1.0, "class_weight": "balanced", "max_iter": 2000}),
    "gradient_boosting": (
        lambda: GradientBoostingClassifier(n_estimators=100, max_depth=2, learning_rate=0.1,
                                           random_state=SEED),
        {"n_estimators": 100, "max_depth": 2, "learning_rate": 0.1}),
}


class NotEnoughLabels(Exception):
    def __init__(self, counts: dict[str, int], minimum: int):
        self.counts, self.minimum = counts, minimum
        super().__init__(
            f"not enough labels to train: {counts.get('effective', 0)} effective and "
            f"{counts.get('not_effective', 0)} not effective; each class needs at least "
            f"{minimum} (ML_MIN_LABELS_PER_CLASS)")


@dataclass
class Trained:
    algorithm: str
    parameters: dict
    pipeline: Pipeline
    feature_names: list[str]
    feature_means: dict[str, list[float]]
    metrics: dict[str, float | None]
    candidates: list[dict]
    folds: int
    class_balance: dict[str, int]
    seconds: float = 0.0
    out_of_fold: list[float] = field(default_factory=list)
    #: The chosen candidate's full evaluation: stratified and grouped figures with 95 %
    #: intervals, calibration tables, per-package figures (``evaluate``).
    evaluation: dict = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)


def _pipeline(factory: Callable, calibration_folds: int) -> Pipeline:
    model = Pipeline([("scale", StandardScaler()), ("model", factory())])
    return Pipeline([
        ("vectorise", DictVectorizer(sparse=False, sort=True)),
        ("classify", CalibratedClassifierCV(model, method="sigmoid", cv=calibration_folds,
                                            ensemble=False)),
    ])


def _metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float | None]:
    predicted = (proba >= 0.5).astype(int)
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "precision": float(precision_score(y, predicted, zero_division=0)),
        "recall": float(recall_score(y, predicted, zero_division=0)),
        "f1": float(f1_score(y, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, proba)) if len(set(y.tolist())) == 2 else None,
        "brier": float(brier_score_loss(y, proba)),
    }


def _calibration_folds(y: np.ndarray, outer_folds: int) -> int:
    """As many sigmoid-calibration folds as the smallest class allows inside a training
    fold (2 to 5), so the sigmoid is fitted on as much out-of-fold data as it can."""
    smallest = int(min(y.sum(), len(y) - y.sum()))
    return max(2, min(5, smallest * (outer_folds - 1) // outer_folds))


def _grouped_proba(factory: Callable, features: list[dict], y: np.ndarray,
                   groups: np.ndarray) -> np.ndarray:
    """Leave-one-group-out probabilities. A training fold with fewer than 2 labels of a
    class cannot be fitted: its held-out rows get the training fold's base rate."""
    proba = np.zeros(len(y))
    rows = np.arange(len(y))
    for train_index, test_index in LeaveOneGroupOut().split(rows, y, groups):
        y_train = y[train_index]
        smallest = int(min(y_train.sum(), len(y_train) - y_train.sum()))
        if smallest < 2:
            proba[test_index] = float(y_train.mean())
            continue
        pipeline = _pipeline(factory, max(2, min(5, smallest)))
        pipeline.fit([features[i] for i in train_index], y_train)
        proba[test_index] = pipeline.predict_proba([features[i] for i in test_index])[:, 1]
    return proba


def _figures(y: np.ndarray, proba: np.ndarray) -> dict:
    """Metrics with 95 % intervals and the calibration table of out-of-fold probabilities."""
    predicted = (proba >= 0.5).astype(int)
    correct = int((predicted == y).sum())
    table = calibration_bins(y, proba)
    accuracy_ci, brier_ci = wilson_interval(correct, len(y)), brier_interval(y, proba)
    return {**_metrics(y, proba), "n": len(y),
            "accuracy_ci95": list(accuracy_ci) if accuracy_ci else None,
            "brier_ci95": list(brier_ci) if brier_ci else None,
            "calibration": table, "ece": expected_calibration_error(table)}


def per_group(y: np.ndarray, proba: np.ndarray, groups: np.ndarray) -> list[dict]:
    """Per package: how many labels, of which class, accuracy (95 % Wilson) and Brier."""
    table = []
    for group in sorted(set(groups.tolist())):
        mask = groups == group
        yg, pg = y[mask], proba[mask]
        correct = int(((pg >= 0.5).astype(int) == yg).sum())
        interval = wilson_interval(correct, int(mask.sum()))
        table.append({"package": group, "n": int(mask.sum()), "effective": int(yg.sum()),
                      "not_effective": int(len(yg) - yg.sum()),
                      "accuracy": correct / int(mask.sum()),
                      "accuracy_ci95": list(interval) if interval else None,
                      "brier": float(np.mean((pg - yg) ** 2))})
    return table


def per_strategy(y: np.ndarray, proba: np.ndarray, strategies: list[str]) -> dict[str, dict]:
    """The grouped figures of each patch strategy's rows: a code patch of a project the
    model never saw is judged by how it did on held-out code patches, not on upgrades."""
    table = {}
    names = np.asarray(strategies, dtype=object)
    for strategy in sorted(set(strategies)):
        mask = names == strategy
        yg, pg = y[mask], proba[mask]
        correct = int(((pg >= 0.5).astype(int) == yg).sum())
        interval = wilson_interval(correct, int(mask.sum()))
        table[strategy] = {"n": int(mask.sum()), "accuracy": correct / int(mask.sum()),
                           "accuracy_ci95": list(interval) if interval else None,
                           "brier": float(np.mean((pg - yg) ** 2))}
    return table


def train(features: list[dict], labels: list[int], *, min_per_class: int,
          groups: list[str] | None = None) -> Trained:
    """Cross-validate every candidate, refit the best on all labels (1 = effective).

    ``groups`` (the package of each label) adds leave-one-package-out cross-validation when
    it names at least ``MIN_GROUPS`` packages; the model is then chosen by its grouped
    Brier score."""
    y = np.asarray(labels, dtype=int)
    counts = {"effective": int(y.sum()), "not_effective": int(len(y) - y.sum())}
    smallest = min(counts.values())
    if smallest < max(min_per_class, 2):
        raise NotEnoughLabels(counts, max(min_per_class, 2))
    started = time.perf_counter()
    folds = min(5, smallest)
    calibration_folds = _calibration_folds(y, folds)
    outer = StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
    group_array = np.asarray(groups if groups is not None else [""] * len(y), dtype=object)
    grouped = groups is not None and len(set(groups)) >= MIN_GROUPS
    tried = []
    for name, (factory, params) in CANDIDATES.items():
        proba = cross_val_predict(_pipeline(factory, calibration_folds), features, y, cv=outer,
                                  method="predict_proba")[:, 1]
        candidate = {"algorithm": name, "parameters": params, **_metrics(y, proba),
                     "_proba": proba}
        if grouped:
            grouped_proba = _grouped_proba(factory, features, y, group_array)
            candidate["grouped"] = _metrics(y, grouped_proba)
            candidate["_grouped_proba"] = grouped_proba
        tried.append(candidate)
    selected_by = "grouped_brier" if grouped else "brier"

    def score(c: dict) -> float:
        return round(c["grouped"]["brier"] if grouped else c["brier"], 4)

    best = min(tried, key=lambda c: (score(c), c["algorithm"] != "logistic_regression"))
    for candidate in tried:
        candidate["chosen"] = candidate is best
    factory, params = CANDIDATES[best["algorithm"]]
    pipeline = _pipeline(factory, calibration_folds).fit(features, y)
    matrix = pipeline.named_steps["vectorise"].transform(features)
    means = {"all": matrix.mean(axis=0), "effective": matrix[y == 1].mean(axis=0),
             "not_effective": matrix[y == 0].mean(axis=0)}
    evaluation = {"selected_by": selected_by,
                  "stratified": {"scheme": f"stratified {folds}-fold",
                                 **_figures(y, best["_proba"])},
                  "grouped": None}
    if grouped:
        evaluation["grouped"] = {
            "scheme": "leave one package out", "packages": len(set(groups)),
            **_figures(y, best["_grouped_proba"]),
            "per_package": per_group(y, best["_grouped_proba"], group_array),
            "per_strategy": per_strategy(y, best["_grouped_proba"],
                                         [str(f.get("strategy", "")) for f in features])}
    return Trained(
        algorithm=best["algorithm"], parameters={**params, "calibration": "sigmoid",
                                                 "calibration_folds": calibration_folds,
                                                 "selected_by": selected_by},
        pipeline=pipeline,
        feature_names=list(pipeline.named_steps["vectorise"].get_feature_names_out()),
        feature_means={k: [float(v) for v in m] for k, m in means.items()},
        metrics={k: best[k] for k in ("accuracy", "precision", "recall", "f1", "roc_auc",
                                      "brier")},
        candidates=[{k: v for k, v in c.items() if not k.startswith("_")} for c in tried],
        folds=folds, class_balance=counts, seconds=time.perf_counter() - started,
        out_of_fold=[float(p) for p in best["_proba"]], evaluation=evaluation,
        groups=sorted(set(groups or [])),
    )


def explain(pipeline: Pipeline, features: dict, means: dict[str, list[float]], *,
            top: int = 3) -> tuple[float, list[dict]]:
    """P(effective) and the features that drove it, contrastively: each feature in turn is
    set to its mean among the training patches of the *other* class, and the change in
    probability is its effect (positive: it pushed towards effective). Against the other
    class rather than the overall mean, because a confident tree model does not move when
    one feature goes to a middle value it has never split on. One batched predict call, so
    explaining costs about what predicting does."""
    vectoriser, classify = pipeline.named_steps["vectorise"], pipeline.named_steps["classify"]
    row = vectoriser.transform([features])[0]
    names = vectoriser.feature_names_
    # Which class is "other" depends on the answer, which is not known before the call: the
    # batch holds the row itself and both contrasts, so one predict_proba does it all.
    contrasts = {label: np.asarray(means[label]) for label in ("effective", "not_effective")}
    changed = {label: np.flatnonzero(row != m) for label, m in contrasts.items()}
    batch = np.repeat(row[None, :], 1 + sum(len(c) for c in changed.values()), axis=0)
    start = 1
    for label, columns in changed.items():
        rows = np.arange(start, start + len(columns))
        batch[rows, columns] = contrasts[label][columns]
        start += len(columns)
    proba = classify.predict_proba(batch)[:, 1]
    p0 = float(proba[0])
    n_effective = len(changed["effective"])
    if p0 >= 0.5:  # contrast with the not-effective patches
        columns, moved = changed["not_effective"], proba[1 + n_effective:]
    else:
        columns, moved = changed["effective"], proba[1:1 + n_effective]
    effects = sorted(((p0 - float(p), names[i]) for p, i in zip(moved, columns, strict=True)),
                     key=lambda e: -abs(e[0]))
    return p0, [{"feature": name, "effect": round(effect, 4)}
                for effect, name in effects[:top] if abs(effect) >= 0.005]
