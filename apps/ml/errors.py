from apps.core.errors import ApplicationError


class NotEnoughLabels(ApplicationError):
    """Fewer labels of a class than ML_MIN_LABELS_PER_CLASS: no model is trained."""

    status_code = 409
    code = "not_enough_labels"


class ModelIntegrityError(ApplicationError):
    """A stored model artifact does not match its recorded hash or holds unknown types."""

    status_code = 500
    code = "model_integrity"
