from apps.core.errors import ApplicationError


class ExperimentInvalid(ApplicationError):
    code = "experiment_invalid"
