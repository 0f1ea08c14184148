"""Links to what advisories and forges say, only when they are http(s) (issue 13).

An advisory's references come from a feed, a pull request's address from a forge: a
``javascript:`` or ``data:`` URL rendered as ``<a href>`` runs in a reviewer's session.
``external_link`` renders http(s) URLs as links that open without a referrer, and anything
else as plain text; ``safe_url`` is the bare check for a template that builds its own tag.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django import template
from django.utils.html import format_html

register = template.Library()

SCHEMES = ("http", "https")


def is_web_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    # Browsers drop whitespace and control characters inside a scheme ("java\tscript:").
    text = value.strip()
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        return False
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme.lower() in SCHEMES and bool(parts.netloc)


@register.filter
def safe_url(value: object) -> str:
    """``value`` when it is an http(s) URL, else an empty string."""
    return value.strip() if is_web_url(value) else ""


@register.filter
def external_link(value: object, text: object = None) -> str:
    """``<a href>`` for an http(s) URL, the escaped text otherwise."""
    label = value if text is None else text
    if not is_web_url(value):
        return format_html("{}", label)
    return format_html('<a href="{}" rel="noopener noreferrer" target="_blank">{}</a>',
                       value.strip(), label)
