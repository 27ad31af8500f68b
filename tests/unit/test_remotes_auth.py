"""WWW-Authenticate parsing and the authorizer's choices, without a network."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from pycontainerd.remotes import auth as auth_mod
from pycontainerd.remotes.auth import (
    Authorizer,
    Challenge,
    Token,
    TokenOptions,
    parse_auth_header,
    repository_scope,
)
from pycontainerd.remotes.errors import Unauthorized, registry_message
from pycontainerd.remotes.hosts import TLSConfig
from pycontainerd.remotes.transport import Transport


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/busybox:pull"',
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://auth.docker.io/token",
                        "service": "registry.docker.io",
                        "scope": "repository:library/busybox:pull",
                    },
                )
            ],
        ),
        ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
        ("basic realm=simple", [Challenge("basic", {"realm": "simple"})]),
        (
            'Bearer realm="r", error="insufficient_scope", scope="repository:a:pull,push"',
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "r",
                        "error": "insufficient_scope",
                        "scope": "repository:a:pull,push",
                    },
                )
            ],
        ),
        # Quoted pairs and separators inside quotes.
        (
            r'Bearer realm="a \"quoted\" realm, with comma",service=s',
            [Challenge("bearer", {"realm": 'a "quoted" realm, with comma', "service": "s"})],
        ),
        # Parameter names are case-insensitive; space around "=" is tolerated.
        ("BEARER Realm = x , Service=y", [Challenge("bearer", {"realm": "x", "service": "y"})]),
        # Several challenges in one value; Bearer sorts first.
        (
            'Basic realm="b", Bearer realm="a",service="s"',
            [
                Challenge("bearer", {"realm": "a", "service": "s"}),
                Challenge("basic", {"realm": "b"}),
            ],
        ),
        # Unknown schemes are left out; a scheme without parameters is kept.
        ('Negotiate abc, Basic realm="x"', [Challenge("basic", {"realm": "x"})]),
        ("Basic", [Challenge("basic", {})]),
        ("", []),
        # An unterminated quote ends the parse without losing what came before.
        ('Bearer realm="x",service="unterminated', [Challenge("bearer", {"realm": "x"})]),
    ],
)
def test_parse_auth_header(header: str, expected: list[Challenge]) -> None:
    assert parse_auth_header([header]) == expected


def test_parse_auth_header_several_values_sorted() -> None:
    values = ['Basic realm="one"', 'Digest realm="two", nonce="n"', 'Bearer realm="three"']
    assert [c.scheme for c in parse_auth_header(values)] == ["bearer", "digest", "basic"]


def test_repository_scope() -> None:
    assert repository_scope("library/busybox") == "repository:library/busybox:pull"
    assert repository_scope("a/b", push=True) == "repository:a/b:pull,push"


def test_registry_message() -> None:
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}'
    assert registry_message(body) == "manifest unknown"
    body = b'{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}'
    assert registry_message(body) == "denied: requested access to the resource is denied"
    assert registry_message(b"<html>") == ""
    assert registry_message(b'{"errors": "x"}') == ""


class _FakeTokens:
    """Stands in for the token fetch functions and counts their calls."""

    def __init__(self, *, oauth_status: int | None = None) -> None:
        self.calls: list[tuple[str, TokenOptions]] = []
        self.oauth_status = oauth_status
        self.n = 0

    def get(self, transport: Any, options: TokenOptions, **kw: Any) -> Token:
        self.calls.append(("GET", options))
        self.n += 1
        return Token(f"token-{self.n}", expires_in=300)

    def post(self, transport: Any, options: TokenOptions, **kw: Any) -> Token:
        self.calls.append(("POST", options))
        if self.oauth_status is not None:
            raise auth_mod.TokenRequestFailed("refused", self.oauth_status)
        self.n += 1
        return Token(f"oauth-{self.n}", expires_in=300)


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> _FakeTokens:
    fake = _FakeTokens()
    monkeypatch.setattr(auth_mod, "fetch_token", fake.get)
    monkeypatch.setattr(auth_mod, "fetch_token_oauth", fake.post)
    return fake


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


BEARER = [Challenge("bearer", {"realm": "http://127.0.0.1:1/token", "service": "svc"})]
TLS = TLSConfig()


def test_bearer_anonymous_token_cached_per_scope_until_expiry(tokens: _FakeTokens) -> None:
    clock = _Clock()
    a = Authorizer(Transport(), None, clock=clock)
    assert a.authorization("reg", ["repository:a:pull"], what="t") is None
    assert a.add_challenges("reg", BEARER, tls=TLS, sent=None)
    assert a.authorization("reg", ["repository:a:pull"], what="t") == "Bearer token-1"
    assert a.authorization("reg", ["repository:a:pull"], what="t") == "Bearer token-1"
    assert a.authorization("reg", ["repository:b:pull"], what="t") == "Bearer token-2"
    assert [c[0] for c in tokens.calls] == ["GET", "GET"]
    assert tokens.calls[0][1].scopes == ("repository:a:pull",)
    assert tokens.calls[0][1].service == "svc"
    clock.now += 295  # within the safety margin before expiry: fetched again
    assert a.authorization("reg", ["repository:a:pull"], what="t") == "Bearer token-3"
    # Another host knows nothing yet.
    assert a.authorization("other", ["repository:a:pull"], what="t") is None


def test_bearer_refused_token_is_forgotten(tokens: _FakeTokens) -> None:
    a = Authorizer(Transport(), None)
    a.add_challenges("reg", BEARER, tls=TLS, sent=None)
    first = a.authorization("reg", ["s"], what="t")
    assert first == "Bearer token-1"
    assert a.add_challenges("reg", BEARER, tls=TLS, sent=first)
    assert a.authorization("reg", ["s"], what="t") == "Bearer token-2"


def test_bearer_with_credentials_uses_oauth_then_falls_back(tokens: _FakeTokens) -> None:
    a = Authorizer(Transport(), lambda host: ("user", "pw"))
    a.add_challenges("reg", BEARER, tls=TLS, sent=None)
    assert a.authorization("reg", ["s"], what="t") == "Bearer oauth-1"
    assert tokens.calls[0][1].username == "user"
    assert tokens.calls[0][1].secret == "pw"

    tokens.oauth_status = 404
    b = Authorizer(Transport(), lambda host: ("user", "pw"))
    b.add_challenges("reg", BEARER, tls=TLS, sent=None)
    assert b.authorization("reg", ["s"], what="t") == "Bearer token-2"
    assert [c[0] for c in tokens.calls[-2:]] == ["POST", "GET"]


def test_bearer_oauth_refusal_other_than_fallback_statuses_is_raised(tokens: _FakeTokens) -> None:
    tokens.oauth_status = 500
    a = Authorizer(Transport(), lambda host: ("", "refresh-token"))
    a.add_challenges("reg", BEARER, tls=TLS, sent=None)
    with pytest.raises(Unauthorized):
        a.authorization("reg", ["s"], what="t")


def test_basic_needs_credentials_and_gives_up_when_refused() -> None:
    basic = [Challenge("basic", {"realm": "r"})]
    assert not Authorizer(Transport(), None).add_challenges("reg", basic, tls=TLS, sent=None)
    a = Authorizer(Transport(), lambda host: ("user", "pw") if host == "reg" else None)
    assert not a.add_challenges("other", basic, tls=TLS, sent=None)
    assert a.add_challenges("reg", basic, tls=TLS, sent=None)
    header = a.authorization("reg", [], what="t")
    assert header == "Basic " + base64.b64encode(b"user:pw").decode()
    assert not a.add_challenges("reg", basic, tls=TLS, sent=header)


def test_bearer_without_realm_is_not_usable() -> None:
    a = Authorizer(Transport(), None)
    assert not a.add_challenges("reg", [Challenge("bearer", {})], tls=TLS, sent=None)
