"""Intervals and calibration for the model's figures (pure numbers, no ORM).

95 % intervals everywhere a rate is reported: Wilson's for proportions (accuracy, the
observed frequency of a calibration bin) because samples are small and rates near 0 or 1
are common — the interval then stays inside [0, 1] and is not zero-width; a seeded
percentile bootstrap for the Brier score, which is a mean of squared errors with no closed
form worth trusting at tens of rows.
"""

from __future__ import annotations

import math

import numpy as np

Z_95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 2000
CALIBRATION_BINS = 10


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval for a proportion (None for n = 0)."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def brier_interval(y: np.ndarray, proba: np.ndarray, *, seed: int = 0,
                   resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float] | None:
    """95 % percentile-bootstrap interval of the Brier score (rows resampled)."""
    y, proba = np.asarray(y, dtype=float), np.asarray(proba, dtype=float)
    if len(y) == 0:
        return None
    errors = (proba - y) ** 2
    rng = np.random.default_rng(seed)
    means = errors[rng.integers(0, len(errors), size=(resamples, len(errors)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def calibration_bins(y: np.ndarray, proba: np.ndarray,
                     bins: int = CALIBRATION_BINS) -> list[dict]:
    """Reliability table: per non-empty bin of predicted probability, how many rows, their
    mean prediction, the observed share of effective patches and its Wilson interval."""
    y, proba = np.asarray(y, dtype=int), np.asarray(proba, dtype=float)
    index = np.minimum((proba * bins).astype(int), bins - 1)
    table = []
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        if not n:
            continue
        positives = int(y[mask].sum())
        interval = wilson_interval(positives, n)
        table.append({"bin": [b / bins, (b + 1) / bins], "n": n,
                      "mean_predicted": float(proba[mask].mean()),
                      "observed": positives / n, "observed_ci95": list(interval)})
    return table


def expected_calibration_error(table: list[dict]) -> float | None:
    """Row-weighted mean gap between mean prediction and observed share, over the bins."""
    total = sum(row["n"] for row in table)
    if not total:
        return None
    return sum(row["n"] * abs(row["mean_predicted"] - row["observed"]) for row in table) / total
