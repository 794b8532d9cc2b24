"""Schemathesis hooks for the run against the demo (scripts/schemathesis.sh).

Keeps the run on this machine: a generated URL that the server would contact (a payment's
webhook_url, a terminal's base_url or camera_url) keeps its form but points at 127.0.0.1:9, where
nothing listens, so no test reaches or even resolves a host elsewhere. Only URLs that already have
an http(s) scheme and a host are rewritten, so a value generated to be invalid stays invalid.
"""

from urllib.parse import urlsplit, urlunsplit

import schemathesis

URL_FIELDS = ("webhook_url", "base_url", "camera_url")


def _to_loopback(value):
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return value
    return urlunsplit((parts.scheme, "127.0.0.1:9", parts.path, parts.query, parts.fragment))


def _rewrite(body):
    if isinstance(body, dict):
        for field in URL_FIELDS:
            if isinstance(body.get(field), str):
                body[field] = _to_loopback(body[field])


@schemathesis.hook
def before_call(context, case, kwargs):
    # The case's body, and the request's own copy where it was already made from it.
    _rewrite(case.body)
    _rewrite(kwargs.get("json"))
