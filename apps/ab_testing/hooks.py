"""What A/B testing asks of the apps above it (docs/architecture.md, "Hooks")."""

from apps.core.hooks import Hook

#: Annotate a queryset of ABTestResult with ``reviewer_decision`` and ``reviewer``: what a
#: reviewer made of the pair's patch revision. Decisions subscribes (it sits above A/B
#: testing); with no subscriber both are null.
reviewer_decisions = Hook("ab_testing.reviewer_decisions", single=True)
