"""Reads of ML-first: the latest prediction of a patch revision, and its audit snapshot."""

from __future__ import annotations

from apps.ml.models import Prediction
from apps.reviews.models import Patch


def prediction_latest(patch: Patch | None) -> Prediction | None:
    if patch is None:
        return None
    return (Prediction.objects.filter(patch=patch, patch_revision=patch.revision)
            .select_related("model_version").order_by("-created_at", "-id").first())


def prediction_snapshot(patch: Patch | None) -> dict | None:
    """What a reviewer saw of the prediction (the decision audit's ``prediction``)."""
    prediction = prediction_latest(patch)
    if prediction is None:
        return None
    return {
        "id": prediction.pk, "route": prediction.route, "reason": prediction.reason,
        "model_version": prediction.model_version.version if prediction.model_version else None,
        "probability": prediction.probability, "confidence": prediction.confidence,
        "predicted_effective": prediction.predicted_effective,
        "top_features": prediction.top_features, "ab_sampled": prediction.ab_sampled,
    }
