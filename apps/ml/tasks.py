from apps.core.instrumentation import instrumented_task
from apps.ml.errors import NotEnoughLabels
from apps.ml.services import model_train, retrain_if_new_labels


@instrumented_task(name="ml.train_model")
def train_model(trigger: str = "task") -> int | None:
    """Train now (the API and admin queue this); None when there are not enough labels."""
    try:
        return model_train(trigger=trigger).version
    except NotEnoughLabels:
        return None


@instrumented_task(name="ml.retrain")
def retrain() -> int | None:
    """Weekly (beat): a new version when enough new labels arrived since the last one."""
    version = retrain_if_new_labels(trigger="beat")
    return version.version if version else None
