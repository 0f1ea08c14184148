from apps.core.errors import ApplicationError


class WargameInvalid(ApplicationError):
    code = "wargame_invalid"
