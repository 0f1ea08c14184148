"""What reviews announces to, and asks of, the apps above it (docs/architecture.md, "Hooks")."""

from apps.core.hooks import Hook

#: Is there something above that routes proposed patches (ML-first with an active model)?
#: Answers a bool; a proposed patch is routed when one says yes or WARGAME_AUTO is set.
routing_active = Hook("reviews.routing_active")

#: A patch revision was proposed and is to be routed (its APVs are ``patch_proposed``).
#: Called with ``patch`` and ``trigger`` inside the proposing transaction; ML-first
#: predicts and sends it to review or to a wargame. One subscriber.
patch_proposed = Hook("reviews.patch_proposed", single=True)
