"""Registry authentication: ``WWW-Authenticate`` challenges, Basic, and the bearer-token flow.

On a 401 the registry names a scheme. For ``Basic`` we send the credentials we have. For
``Bearer realm=...,service=...,scope=...`` we ask the realm for a token covering the request's
scopes (``repository:<name>:pull[,push]``): anonymously with ``GET``, or with credentials as
containerd does — an OAuth2 ``POST`` when we hold a secret, falling back to ``GET`` with Basic
credentials where the server has no OAuth2 endpoint. Tokens are kept per host and scope set until
shortly before they expire.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from pycontainerd.remotes.credentials import Credentials
from pycontainerd.remotes.errors import Unauthorized, read_error_body, registry_message
from pycontainerd.remotes.hosts import TLSConfig
from pycontainerd.remotes.transport import Transport

__all__ = [
    "CLIENT_ID",
    "DEFAULT_EXPIRES_IN",
    "Authorizer",
    "Challenge",
    "Token",
    "TokenOptions",
    "TokenRequestFailed",
    "fetch_token",
    "fetch_token_oauth",
    "parse_auth_header",
    "repository_scope",
]

log = logging.getLogger(__name__)

#: containerd's OAuth2 client id; registries log it.
CLIENT_ID = "containerd-client"
#: How long a token lives when the server does not say (the token specification's default).
DEFAULT_EXPIRES_IN = 60


# --- WWW-Authenticate -----------------------------------------------------------------------------

_SEPARATORS = frozenset(' \t"(),/:;<=>?@[]\\{}')


def _is_token_char(c: str) -> bool:
    o = ord(c)
    return 32 < o < 127 and c not in _SEPARATORS


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: the scheme in lowercase (``basic``,
    ``bearer``, ``digest``) and its parameters (names in lowercase)."""

    scheme: str
    parameters: Mapping[str, str] = field(default_factory=dict)


_SCHEME_ORDER = {"bearer": 0, "digest": 1, "basic": 2}


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def skip_space(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t\r\n":
            self.i += 1

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def token(self) -> str:
        start = self.i
        while self.i < len(self.s) and _is_token_char(self.s[self.i]):
            self.i += 1
        return self.s[start : self.i]

    def token_or_quoted(self) -> str | None:
        if self.peek() != '"':
            return self.token()
        self.i += 1
        out = []
        while self.i < len(self.s):
            c = self.s[self.i]
            self.i += 1
            if c == "\\" and self.i < len(self.s):
                out.append(self.s[self.i])
                self.i += 1
            elif c == '"':
                return "".join(out)
            else:
                out.append(c)
        return None  # unterminated


def _parse_value(text: str) -> list[Challenge]:
    sc = _Scanner(text)
    out: list[Challenge] = []
    while True:
        sc.skip_space()
        while sc.peek() == ",":
            sc.i += 1
            sc.skip_space()
        scheme = sc.token()
        if not scheme:
            return out
        params: dict[str, str] = {}
        while True:
            sc.skip_space()
            mark = sc.i
            key = sc.token()
            sc.skip_space()
            if not key or sc.peek() != "=":
                sc.i = mark  # the next challenge's scheme, or the end
                break
            sc.i += 1
            sc.skip_space()
            value = sc.token_or_quoted()
            if value is None:
                out.append(Challenge(scheme.lower(), params))
                return out
            params[key.lower()] = value
            sc.skip_space()
            if sc.peek() != ",":
                break
            sc.i += 1
        out.append(Challenge(scheme.lower(), params))


def parse_auth_header(values: Iterable[str]) -> list[Challenge]:
    """The challenges of ``WWW-Authenticate`` header values, strongest first (Bearer, Digest,
    Basic), unknown schemes left out. A value may hold several challenges."""
    found = [c for v in values for c in _parse_value(v) if c.scheme in _SCHEME_ORDER]
    return sorted(found, key=lambda c: _SCHEME_ORDER[c.scheme])


def repository_scope(repository: str, *, push: bool = False) -> str:
    """The token scope for pulling (and pushing) ``repository``."""
    return f"repository:{repository}:pull" + (",push" if push else "")


# --- tokens -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenOptions:
    """What to ask a token server: its ``realm`` URL, ``service``, ``scopes``, credentials."""

    realm: str
    service: str = ""
    scopes: tuple[str, ...] = ()
    username: str = ""
    secret: str = ""


@dataclass(frozen=True)
class Token:
    """A bearer token, how long it lives (seconds) and any refresh token."""

    token: str
    expires_in: int = DEFAULT_EXPIRES_IN
    refresh_token: str = ""


class TokenRequestFailed(Unauthorized):
    """The token server refused to give a token; ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _user_agent(headers: Mapping[str, str]) -> dict[str, str]:
    out = dict(headers)
    out.setdefault("User-Agent", "pycontainerd")
    return out


def _token_response(
    what: str, realm: str, status: int, reason: str, body: bytes, oauth: bool
) -> Token:
    if status >= 400 or status < 200:
        message = registry_message(body) or _oauth_error(body)
        text = f"{what}: fetch token from {realm}: {status} {reason}".rstrip()
        raise TokenRequestFailed(text + (f": {message}" if message else ""), status)
    try:
        doc = json.loads(body)
    except ValueError:
        raise Unauthorized(f"{what}: fetch token from {realm}: invalid token response") from None
    if not isinstance(doc, dict):
        raise Unauthorized(f"{what}: fetch token from {realm}: invalid token response")
    token = doc.get("access_token") or ("" if oauth else doc.get("token"))
    if not token or not isinstance(token, str):
        raise Unauthorized(f"{what}: fetch token from {realm}: the response holds no token")
    expires = doc.get("expires_in")
    expires_in = expires if isinstance(expires, int) and expires > 0 else DEFAULT_EXPIRES_IN
    refresh = doc.get("refresh_token")
    return Token(token, expires_in, refresh if isinstance(refresh, str) else "")


def _oauth_error(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    if isinstance(doc, dict):
        return str(doc.get("error_description") or doc.get("error") or doc.get("details") or "")
    return ""


def _check_realm(what: str, realm: str) -> None:
    parts = urlsplit(realm)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Unauthorized(f"{what}: invalid token realm {realm!r}")


def fetch_token(
    transport: Transport,
    options: TokenOptions,
    *,
    tls: TLSConfig,
    what: str,
    headers: Mapping[str, str] | None = None,
) -> Token:
    """``GET realm?service=...&scope=...``, with Basic credentials when there is a secret."""
    _check_realm(what, options.realm)
    query: list[tuple[str, str]] = []
    if options.service:
        query.append(("service", options.service))
    query.extend(("scope", s) for s in options.scopes)
    url = options.realm
    if query:
        url += ("&" if "?" in url else "?") + urlencode(query)
    hdrs = _user_agent(headers or {})
    if options.secret:
        pair = f"{options.username}:{options.secret}".encode()
        hdrs["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    resp = transport.request("GET", url, tls=tls, what=what, headers=hdrs)
    body = read_error_body(resp, limit=1 << 20)
    return _token_response(what, options.realm, resp.status, resp.reason or "", body, False)


def fetch_token_oauth(
    transport: Transport,
    options: TokenOptions,
    *,
    tls: TLSConfig,
    what: str,
    headers: Mapping[str, str] | None = None,
) -> Token:
    """The OAuth2 form ``POST`` to the realm: a ``password`` grant with a username, else a
    ``refresh_token`` grant with the secret as the refresh token."""
    _check_realm(what, options.realm)
    form: dict[str, str] = {}
    if options.scopes:
        form["scope"] = " ".join(options.scopes)
    form["service"] = options.service
    form["client_id"] = CLIENT_ID
    if options.username:
        form.update(grant_type="password", username=options.username, password=options.secret)
    else:
        form.update(grant_type="refresh_token", refresh_token=options.secret)
    hdrs = _user_agent(headers or {})
    hdrs["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
    resp = transport.request(
        "POST",
        options.realm,
        tls=tls,
        what=what,
        headers=hdrs,
        body=urlencode(form).encode(),
    )
    body = read_error_body(resp, limit=1 << 20)
    return _token_response(what, options.realm, resp.status, resp.reason or "", body, True)


# --- the authorizer -------------------------------------------------------------------------------


@dataclass
class _Cached:
    value: str
    deadline: float


class _BearerHandler:
    def __init__(self, options: TokenOptions, tls: TLSConfig) -> None:
        self.options = options
        self.tls = tls
        self.tokens: dict[str, _Cached] = {}
        self.locks: dict[str, threading.Lock] = {}


@dataclass(frozen=True)
class _BasicHandler:
    header: str


class Authorizer:
    """Authorization headers for registry requests, per host; thread-safe.

    :meth:`authorization` gives the header for a request to ``host`` needing ``scopes`` (it may
    fetch a token). :meth:`add_challenges` learns from a 401 how ``host`` wants to be asked.
    """

    def __init__(
        self,
        transport: Transport,
        credentials: Credentials | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._credentials = credentials
        self._headers = dict(headers or {})
        self._clock = clock
        self._lock = threading.Lock()
        self._handlers: dict[str, _BearerHandler | _BasicHandler] = {}

    def _creds(self, host: str) -> tuple[str, str]:
        if self._credentials is None:
            return "", ""
        found = self._credentials(host)
        return found if found is not None else ("", "")

    def authorization(self, host: str, scopes: Sequence[str], *, what: str) -> str | None:
        """The ``Authorization`` value for a request to ``host``; None when none is known."""
        with self._lock:
            handler = self._handlers.get(host)
        if handler is None:
            return None
        if isinstance(handler, _BasicHandler):
            return handler.header
        return "Bearer " + self._token(handler, scopes, what)

    def _token(self, handler: _BearerHandler, scopes: Sequence[str], what: str) -> str:
        all_scopes = tuple(sorted(set(handler.options.scopes) | set(scopes)))
        key = " ".join(all_scopes)
        with self._lock:
            cached = handler.tokens.get(key)
            if cached is not None and cached.deadline > self._clock():
                return cached.value
            lock = handler.locks.setdefault(key, threading.Lock())
        with lock:  # one fetch per scope set at a time; the others wait for its token
            with self._lock:
                cached = handler.tokens.get(key)
                if cached is not None and cached.deadline > self._clock():
                    return cached.value
            options = TokenOptions(
                handler.options.realm,
                handler.options.service,
                all_scopes,
                handler.options.username,
                handler.options.secret,
            )
            token = self._fetch(options, handler.tls, what)
            margin = min(10.0, token.expires_in / 10)
            with self._lock:
                handler.tokens[key] = _Cached(
                    token.token, self._clock() + token.expires_in - margin
                )
            return token.token

    def _fetch(self, options: TokenOptions, tls: TLSConfig, what: str) -> Token:
        t, h = self._transport, self._headers
        if not options.secret:
            return fetch_token(t, options, tls=tls, what=what, headers=h)
        try:
            return fetch_token_oauth(t, options, tls=tls, what=what, headers=h)
        except TokenRequestFailed as exc:
            # As containerd: a token server without the OAuth2 endpoint (or refusing the form)
            # is asked the plain way, with Basic credentials.
            status = exc.status
            if status in (400, 401, 404) or (status == 405 and options.username):
                log.debug("oauth token request failed (%s); trying GET", status)
                return fetch_token(t, options, tls=tls, what=what, headers=h)
            raise

    def add_challenges(
        self,
        host: str,
        challenges: Sequence[Challenge],
        *,
        tls: TLSConfig,
        sent: str | None,
    ) -> bool:
        """Learn from a 401 of ``host`` that carried ``sent`` as its ``Authorization``; whether
        another try may succeed (it may not when the same credentials were refused)."""
        for c in challenges:
            if c.scheme == "bearer":
                realm = c.parameters.get("realm", "")
                if not realm:
                    continue
                service = c.parameters.get("service", "")
                scope = c.parameters.get("scope", "")
                with self._lock:
                    handler = self._handlers.get(host)
                    if (
                        isinstance(handler, _BearerHandler)
                        and handler.options.realm == realm
                        and handler.options.service == service
                    ):
                        if sent is None:
                            return True  # raced with another request that set it up
                        # The token was refused: forget it, so the next try fetches a new one.
                        token = sent.removeprefix("Bearer ")
                        handler.tokens = {
                            k: v for k, v in handler.tokens.items() if v.value != token
                        }
                        return True
                username, secret = self._creds(host)
                options = TokenOptions(
                    realm, service, tuple(scope.split()) if scope else (), username, secret
                )
                with self._lock:
                    self._handlers[host] = _BearerHandler(options, tls)
                return True
            if c.scheme == "basic":
                username, secret = self._creds(host)
                if not username or not secret:
                    continue
                header = "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()
                if sent == header:
                    return False
                with self._lock:
                    self._handlers[host] = _BasicHandler(header)
                return True
        return False

    def forget(self, host: str) -> None:
        """Drop what is known about ``host``."""
        with self._lock:
            self._handlers.pop(host, None)
