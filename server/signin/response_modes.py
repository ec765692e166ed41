"""How the authorization response reaches the client: ``response_mode`` (OAuth 2.0 Multiple
Response Type Encoding Practices §2.1, and OAuth 2.0 Form Post Response Mode).

- ``query``, the default for ``code``: a redirect with the response in the query.
- ``fragment``, only when the request asks for it: a redirect with the response in the
  fragment, which the browser keeps from the client's server.
- ``form_post``: a page whose form posts the response to the redirect URI, submitted by
  a script, or by a button where scripts do not run. The code never appears in a URL, so
  neither the browser's history nor a server's access log holds it.

Errors go back the way the request asked too, unless ``response_mode`` is what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from authlib.oauth2.rfc6749.errors import InvalidRequestError

from .outcome import FormPost, Outcome

QUERY = "query"
FRAGMENT = "fragment"
FORM_POST = "form_post"
SUPPORTED = (QUERY, FRAGMENT, FORM_POST)


def check(data: Mapping[str, str], redirect_uri: str) -> None:
    """Refuse a ``response_mode`` we do not serve, or ``form_post`` to an address no page
    can post to (a native app's private-use scheme, an IPv6 literal)."""
    mode = data.get("response_mode")
    if mode is None:
        return
    if mode not in SUPPORTED:
        raise InvalidRequestError(f"response_mode must be one of {', '.join(SUPPORTED)}.", redirect_uri=redirect_uri)
    if mode == FORM_POST and not _postable(redirect_uri):
        raise InvalidRequestError(
            "response_mode=form_post needs an http or https redirect URI with a host name.",
            redirect_uri=redirect_uri,
        )


def deliver(data: Mapping[str, str], redirect_uri: str, location: str) -> Outcome:
    """The response sent the way the request asked. ``location`` is the redirect Authlib
    answered with: ``redirect_uri`` with the response's parameters after its own query."""
    mode = _mode(data, redirect_uri)
    if mode == QUERY:
        return Outcome(redirect=location)
    own = parse_qsl(urlsplit(redirect_uri).query, keep_blank_values=True)
    response = parse_qsl(urlsplit(location).query, keep_blank_values=True)[len(own) :]
    if mode == FRAGMENT:
        return Outcome(redirect=urlunsplit(urlsplit(redirect_uri)._replace(fragment=urlencode(response))))
    return Outcome(post=FormPost(redirect_uri, tuple(response)))


def _mode(data: Mapping[str, str], redirect_uri: str) -> str:
    """The mode to answer in: the one asked for, unless it cannot be used (the error that
    says so goes by query)."""
    try:
        check(data, redirect_uri)
    except InvalidRequestError:
        return QUERY
    return data.get("response_mode") or QUERY


def _postable(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host) and ":" not in (host or "")
