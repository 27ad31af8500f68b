"""Basic (htpasswd) and bearer-token authentication against a real docker-registry."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.descriptor import Descriptor
from pycontainerd.remotes import (
    Resolver,
    RetryPolicy,
    Unauthorized,
    distribution_source_label_key,
    docker_config_credentials,
    static_credentials,
)
from tests.fixtures.registry import Blob, Image, Registry, TokenServer, make_image, run_registry

pytestmark = pytest.mark.integration

FAST = RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.05)
USER, PASSWORD = "tester", "secret-pass"


def desc(b: Blob) -> Descriptor:
    return Descriptor(b.media_type, b.digest, b.size)


def push_image(resolver: Resolver, ref: str, image: Image) -> list[str]:
    pusher = resolver.pusher(ref)
    return [pusher.push(desc(b), io.BytesIO(b.data)) for b in image.blobs]


def fetch_all(resolver: Resolver, ref: str, image: Image) -> None:
    name, index = resolver.resolve(ref)
    assert index.digest == image.index.digest
    fetcher = resolver.fetcher(name)
    for b in image.blobs:
        assert fetcher.fetch_bytes(desc(b)) == b.data


# --- htpasswd ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def basic_registry() -> Iterator[Registry]:
    with run_registry(auth="htpasswd", users={USER: PASSWORD}) as reg:
        yield reg


def test_basic_auth(basic_registry: Registry) -> None:
    ref = f"{basic_registry.host}/test/basic:v1"
    image = make_image("basic")
    with Resolver(credentials=static_credentials(USER, PASSWORD), retry=FAST) as r:
        assert push_image(r, ref, image) == ["uploaded"] * 4
        fetch_all(r, ref, image)


def test_basic_auth_without_credentials(basic_registry: Registry) -> None:
    ref = f"{basic_registry.host}/test/basic-anon:v1"
    with Resolver(retry=FAST) as r, pytest.raises(Unauthorized) as info:
        r.resolve(ref)
    message = str(info.value)
    assert ref in message
    assert "401" in message
    assert basic_registry.host in message


def test_basic_auth_wrong_password(basic_registry: Registry) -> None:
    ref = f"{basic_registry.host}/test/basic-wrong:v1"
    with Resolver(credentials=static_credentials(USER, "nope"), retry=FAST) as r:
        with pytest.raises(Unauthorized, match="401"):
            r.resolve(ref)
        image = make_image("basic-wrong")
        with pytest.raises(Unauthorized):
            r.pusher(ref).push(desc(image.layer), io.BytesIO(image.layer.data))


def test_basic_auth_from_docker_config(basic_registry: Registry, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    config.write_text(json.dumps({"auths": {f"http://{basic_registry.host}": {"auth": auth}}}))
    ref = f"{basic_registry.host}/test/basic-config:v1"
    image = make_image("basic-config")
    with Resolver(credentials=docker_config_credentials(config), retry=FAST) as r:
        push_image(r, ref, image)
        fetch_all(r, ref, image)


# --- token ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, TokenServer]]:
    directory = tmp_path_factory.mktemp("token")
    with (
        TokenServer(directory, users={USER: PASSWORD}, refresh_tokens={"id-token": USER}) as ts,
        run_registry(auth="token", token_server=ts) as reg,
    ):
        yield reg, ts


def test_token_auth_push_with_credentials_then_anonymous_pull(
    token_setup: tuple[Registry, TokenServer],
) -> None:
    reg, ts = token_setup
    ref = f"{reg.host}/test/token:v1"
    image = make_image("token")
    ts.requests.clear()
    with Resolver(credentials=static_credentials(USER, PASSWORD), retry=FAST) as r:
        push_image(r, ref, image)
    # With a secret, the OAuth2 form is used, asking to pull and push the repository.
    assert ts.requests
    assert all(q.method == "POST" and q.grant_type == "password" for q in ts.requests)
    assert "repository:test/token:pull,push" in ts.requests[0].scopes
    assert ts.requests[0].service == ts.service
    # One token serves the whole push.
    assert len(ts.requests) == 1

    ts.requests.clear()
    with Resolver(retry=FAST) as r:
        fetch_all(r, ref, image)
    assert [(q.method, q.user, q.scopes) for q in ts.requests] == [
        ("GET", "", ["repository:test/token:pull"])
    ]


def test_token_auth_anonymous_push_is_refused(token_setup: tuple[Registry, TokenServer]) -> None:
    reg, _ = token_setup
    image = make_image("token-anon")
    with Resolver(retry=FAST) as r, pytest.raises(Unauthorized) as info:
        r.pusher(f"{reg.host}/test/token-anon:v1").push(
            desc(image.layer), io.BytesIO(image.layer.data)
        )
    assert "401" in str(info.value)
    assert "insufficient_scope" in str(info.value) or "authentication required" in str(info.value)


def test_token_auth_wrong_password(token_setup: tuple[Registry, TokenServer]) -> None:
    reg, ts = token_setup
    with (
        Resolver(credentials=static_credentials(USER, "bad"), retry=FAST) as r,
        pytest.raises(Unauthorized) as info,
    ):
        r.resolve(f"{reg.host}/test/token:v1")
    assert ts.realm in str(info.value)
    assert "401" in str(info.value)


def test_token_get_fallback_without_oauth(token_setup: tuple[Registry, TokenServer]) -> None:
    reg, ts = token_setup
    ref = f"{reg.host}/test/token-get:v1"
    image = make_image("token-get")
    ts.oauth = False
    ts.requests.clear()
    try:
        with Resolver(credentials=static_credentials(USER, PASSWORD), retry=FAST) as r:
            push_image(r, ref, image)
            fetch_all(r, ref, image)
    finally:
        ts.oauth = True
    methods = [(q.method, q.user, q.status) for q in ts.requests]
    assert methods[:2] == [("POST", USER, 404), ("GET", USER, 200)]


def test_token_identity_token(token_setup: tuple[Registry, TokenServer], tmp_path: Path) -> None:
    reg, ts = token_setup
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {reg.host: {"identitytoken": "id-token"}}}))
    ref = f"{reg.host}/test/token-id:v1"
    image = make_image("token-id")
    ts.requests.clear()
    with Resolver(credentials=docker_config_credentials(config), retry=FAST) as r:
        push_image(r, ref, image)
        fetch_all(r, ref, image)
    assert ts.requests[0].grant_type == "refresh_token"
    assert ts.requests[0].user == USER


def test_token_cached_across_requests_and_threads(
    token_setup: tuple[Registry, TokenServer],
) -> None:
    reg, ts = token_setup
    ref = f"{reg.host}/test/token-cache:v1"
    image = make_image("token-cache")
    with Resolver(credentials=static_credentials(USER, PASSWORD), retry=FAST) as r:
        push_image(r, ref, image)
    ts.requests.clear()
    with Resolver(retry=FAST) as r:
        for _ in range(5):
            fetch_all(r, ref, image)
    assert len(ts.requests) == 1


def test_token_cross_repository_mount(token_setup: tuple[Registry, TokenServer]) -> None:
    reg, ts = token_setup
    image = make_image("token-mount")
    creds = static_credentials(USER, PASSWORD)
    with Resolver(credentials=creds, retry=FAST) as r:
        push_image(r, f"{reg.host}/team/src:v1", image)
        ts.requests.clear()
        pusher = r.pusher(f"{reg.host}/team/dst:v1")
        labels = {distribution_source_label_key(reg.host): "team/src"}
        assert pusher.push(desc(image.layer), io.BytesIO(b""), labels=labels) == "mounted"
    scopes = {s for q in ts.requests for s in q.scopes}
    assert {"repository:team/dst:pull,push", "repository:team/src:pull"} <= scopes


def test_unauthorized_is_an_errdefs_error() -> None:
    assert issubclass(Unauthorized, errdefs.Unknown)
