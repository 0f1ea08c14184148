"""What ML-first announces to the apps above it (docs/architecture.md, "Hooks")."""

from apps.core.hooks import Hook

#: A prediction routed its patch revision straight to review (route ``ml``). Called with
#: ``prediction`` inside the routing transaction; A/B testing may sample it and queue a
#: shadow wargame, answering ``(run, created)`` (None when nothing subscribed or it was
#: not sampled).
routed_to_review = Hook("ml.routed_to_review", single=True)
