"""Who the client is: ``X-Forwarded-For`` believed from ``TRUSTED_PROXIES`` only (issue 13).

uvicorn trusted ``X-Forwarded-For`` from any loopback peer by default, and DRF's throttles
keyed on the whole header, so a client behind a local proxy could send a new address with
every request and never be limited. Now one setting, ``TRUSTED_PROXIES`` (the environment
variable ``FORWARDED_ALLOW_IPS``, which uvicorn reads too), decides: when the peer is a
trusted proxy the client is the right-most address of ``X-Forwarded-For`` that is not itself
a trusted proxy (what each proxy appended, so a client cannot forge it), else the peer.

``TrustedProxyMiddleware`` writes that address to ``REMOTE_ADDR``, which the rate limits
(django-ratelimit ``key="ip"``, DRF with ``NUM_PROXIES = 0``) and the audit trail read. It
implements uvicorn's rule, so behind uvicorn started with the same setting it finds the
address uvicorn already put there and changes nothing; under any other server (daphne,
runserver, the test client) it applies the rule itself.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse


@lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[bool, tuple, frozenset[str]]:
    if "*" in trusted:
        return True, (), frozenset()
    networks, literals = [], set()
    for entry in trusted:
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            literals.add(entry)  # e.g. a unix socket name, as uvicorn allows
    return False, tuple(networks), frozenset(literals)


def is_trusted(address: str, trusted: tuple[str, ...] | None = None) -> bool:
    every, networks, literals = _networks(
        tuple(settings.TRUSTED_PROXIES) if trusted is None else trusted)
    if every:
        return True
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address in literals
    return any(ip in network for network in networks)


def _host(entry: str) -> str:
    """An X-Forwarded-For entry without its port (``1.2.3.4:5``, ``[::1]:5``)."""
    entry = entry.strip()
    if entry.startswith("[") and "]" in entry:
        return entry[1:entry.index("]")]
    if entry.count(":") == 1:
        return entry.split(":", 1)[0]
    return entry


def client_address(peer: str, forwarded_for: str) -> str:
    """The client's address by uvicorn's rule (right-most untrusted hop)."""
    if not forwarded_for or not is_trusted(peer):
        return peer
    hops = [_host(h) for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return hops[0] if hops else peer


def valid_ip(address: str | None) -> str | None:
    """``address`` when it is an IP address (what an audit row stores), else None."""
    try:
        return str(ipaddress.ip_address(address or ""))
    except ValueError:
        return None


class TrustedProxyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        peer = request.META.get("REMOTE_ADDR", "")
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if settings.TRUSTED_PROXIES and forwarded:
            # A hop that is not an address (a proxy passing junk on) never becomes the client:
            # the audit trail stores addresses, and the peer is at least true.
            request.META["REMOTE_ADDR"] = valid_ip(client_address(peer, forwarded)) or peer
        return self.get_response(request)


def ratelimit_ip(request: HttpRequest) -> str:
    """django-ratelimit's ``key="ip"`` (``RATELIMIT_IP_META_KEY``): the address above.

    A request with no peer address (a unix socket; a WSGI test client) shares one bucket
    instead of django-ratelimit's KeyError/ImproperlyConfigured, which were a 500.
    """
    return valid_ip(request.META.get("REMOTE_ADDR")) or "0.0.0.0"  # noqa: S104 (a key, not a bind)
