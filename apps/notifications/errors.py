"""Errors of the notifications app."""


class DeliveryError(Exception):
    """A send failed and may succeed later (the task retries it). The message names the
    channel and the host only: never a webhook URL, which may carry a token."""


class TargetGone(Exception):  # noqa: N818 (a state, not an error)
    """The delivery's target is no longer configured (a webhook URL was removed)."""
