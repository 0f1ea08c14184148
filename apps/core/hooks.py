"""Hooks: how a lower app tells the apps above it that something happened, without importing
them (docs/architecture.md, "Hooks").

A lower app declares a hook in its ``hooks.py`` (``run_finished = Hook("wargaming.run_finished")``)
and calls it where the event happens; an app above subscribes in its ``AppConfig.ready``
(``run_finished.subscribe(predictions_settle)``). Subscribers are called in the order they
subscribed, which is the order of ``INSTALLED_APPS`` (the dependency order), synchronously
and inside the caller's transaction, so what they write commits or rolls back with the
event itself. An exception in a subscriber propagates to the caller: an event whose
consequences could not be recorded is not recorded either.

Django's signals would do the calling too; a hook is used where the caller needs the
subscribers' answers (``results``) or where there must be at most one subscriber
(``single=True``), which signals do not say.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Hook:
    def __init__(self, name: str, *, single: bool = False) -> None:
        self.name = name
        self.single = single
        self._subscribers: list[Callable[..., Any]] = []

    def subscribe(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add ``fn`` (once: ``ready`` may run twice in tests). Usable as a decorator."""
        if fn in self._subscribers:
            return fn
        if self.single and self._subscribers:
            raise RuntimeError(f"hook {self.name} takes one subscriber; "
                               f"{self._subscribers[0].__qualname__} already has it")
        self._subscribers.append(fn)
        return fn

    def unsubscribe(self, fn: Callable[..., Any]) -> None:
        if fn in self._subscribers:
            self._subscribers.remove(fn)

    @property
    def subscribed(self) -> bool:
        return bool(self._subscribers)

    def __call__(self, **kwargs: Any) -> list[Any]:
        """Call every subscriber with these keyword arguments; their answers, in order."""
        return [fn(**kwargs) for fn in list(self._subscribers)]

    def first(self, default: Any = None, **kwargs: Any) -> Any:
        """The first subscriber's answer that is not None (later ones are still called)."""
        return next((r for r in self(**kwargs) if r is not None), default)

    def __repr__(self) -> str:
        return f"<Hook {self.name}: {len(self._subscribers)} subscriber(s)>"
