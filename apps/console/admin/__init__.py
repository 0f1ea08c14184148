"""The review console: the APV queue and detail (``apv``), patches (``patch``)."""

from apps.console.admin import apv, patch  # noqa: F401 (registers the ModelAdmins)
