"""What wargaming announces to the apps above it (docs/architecture.md, "Hooks")."""

from apps.core.hooks import Hook

#: A run finished (any verdict) or was ended by the reaper: ground truth for whatever was
#: waiting on it. Called with ``run`` inside a transaction of its own, after the run is
#: stored; ML-first settles its predictions, A/B testing records the pair.
run_finished = Hook("wargaming.run_finished")
