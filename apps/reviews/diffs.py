"""Unified diffs rendered for reviewers: syntax-highlighted with Pygments, safely escaped."""

from __future__ import annotations

from django.utils.safestring import SafeString, mark_safe
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer

#: Diffs past this size are shown truncated (the full diff stays on the patch and its branch).
DISPLAY_LIMIT = 200_000

_FORMATTER = HtmlFormatter(cssclass="immune-diff", linenos=False, wrapcode=True)


def diff_html(diff: str) -> SafeString:
    """Pygments escapes every character of the input; the markup it adds is its own."""
    shown = diff[:DISPLAY_LIMIT]
    if len(diff) > DISPLAY_LIMIT:
        shown += f"\n… {len(diff) - DISPLAY_LIMIT} more characters on the branch\n"
    return mark_safe(highlight(shown, DiffLexer(), _FORMATTER))  # noqa: S308 (escaped)


def diff_css() -> SafeString:
    return mark_safe(_FORMATTER.get_style_defs(".immune-diff"))  # noqa: S308 (our own CSS)
