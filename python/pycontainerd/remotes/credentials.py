"""Registry credentials: ``--user`` values and Docker's ``config.json``.

A credentials provider is a function of the registry host actually contacted (``127.0.0.1:5000``,
``registry-1.docker.io``) returning ``(username, secret)``, or None for anonymous access. A
username of ``""`` with a secret means the secret is an identity (refresh) token, used with the
OAuth2 token flow, as in containerd.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import subprocess
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from pycontainerd import errdefs

__all__ = [
    "DOCKER_HUB_AUTH_KEY",
    "Credentials",
    "chain_credentials",
    "docker_config_credentials",
    "docker_config_path",
    "parse_user",
    "static_credentials",
]

log = logging.getLogger(__name__)

#: A credentials provider: registry host → (username, secret), or None.
Credentials = Callable[[str], tuple[str, str] | None]

#: The key Docker stores Docker Hub's credentials under.
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def parse_user(user: str) -> tuple[str, str]:
    """Split ctr's ``--user`` value ``name[:secret]`` at its first colon."""
    name, _, secret = user.partition(":")
    return name, secret


def static_credentials(
    username: str, secret: str, *, hosts: Collection[str] | None = None
) -> Credentials:
    """The same credentials for every host (ctr's ``--user``), or only for those in ``hosts``."""

    def provide(host: str) -> tuple[str, str] | None:
        if hosts is not None and host not in hosts:
            return None
        if not username and not secret:
            return None
        return username, secret

    return provide


def chain_credentials(*providers: Credentials | None) -> Credentials:
    """The first answer of ``providers``, in order."""

    def provide(host: str) -> tuple[str, str] | None:
        for p in providers:
            if p is not None and (found := p(host)) is not None:
                return found
        return None

    return provide


def docker_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    env = os.environ if environ is None else environ
    if directory := env.get("DOCKER_CONFIG"):
        return Path(directory) / "config.json"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".docker" / "config.json"


def _hostname(key: str) -> str:
    """Docker's ``ConvertToHostname``: drop the scheme and any path of an ``auths`` key."""
    for prefix in ("http://", "https://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
            break
    return key.partition("/")[0]


def _candidates(host: str) -> list[str]:
    if host in _DOCKER_HUB_HOSTS:
        return ["index.docker.io", "docker.io", "registry-1.docker.io"]
    return [host]


def _from_entry(entry: Mapping[str, Any], where: str) -> tuple[str, str] | None:
    if token := entry.get("identitytoken"):
        return "", str(token)
    username = str(entry.get("username") or "")
    password = str(entry.get("password") or "")
    if auth := entry.get("auth"):
        try:
            decoded = base64.b64decode(str(auth), validate=False).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise errdefs.InvalidArgument(f"decode auth of {where}: invalid base64") from None
        user, sep, secret = decoded.partition(":")
        if not sep:
            raise errdefs.InvalidArgument(f"decode auth of {where}: no colon in user:password")
        username, password = user, secret
    if username or password:
        return username, password
    return None


def _run_helper(helper: str, server: str) -> tuple[str, str] | None:
    program = f"docker-credential-{helper}"
    try:
        result = subprocess.run(
            [program, "get"], input=server, capture_output=True, text=True, timeout=60
        )
    except FileNotFoundError:
        log.warning("credential helper %s not found", program)
        return None
    except subprocess.TimeoutExpired:
        raise errdefs.Unavailable(f"credential helper {program} for {server}: timed out") from None
    if result.returncode != 0:
        message = (result.stdout or result.stderr).strip()
        if "credentials not found" in message.lower():
            return None
        raise errdefs.Unknown(f"credential helper {program} for {server}: {message}")
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise errdefs.Unknown(f"credential helper {program} for {server}: bad output") from None
    username, secret = str(data.get("Username", "")), str(data.get("Secret", ""))
    if username == "<token>":
        return "", secret
    return (username, secret) if username or secret else None


def docker_config_credentials(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Credentials:
    """Credentials from Docker's ``config.json`` (read at each call, so a later ``docker login``
    counts): ``credHelpers``, ``auths`` (``auth`` as base64 ``user:password``, ``username`` and
    ``password``, ``identitytoken``), then ``credsStore``. Docker Hub's hosts match
    ``https://index.docker.io/v1/``."""
    config_path = Path(path) if path is not None else docker_config_path(environ)

    def provide(host: str) -> tuple[str, str] | None:
        try:
            text = config_path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise errdefs.Unavailable(f"read docker config {config_path}: {exc}") from None
        try:
            config = json.loads(text)
        except json.JSONDecodeError as exc:
            raise errdefs.InvalidArgument(f"parse docker config {config_path}: {exc}") from None
        if not isinstance(config, dict):
            raise errdefs.InvalidArgument(f"parse docker config {config_path}: not an object")
        candidates = _candidates(host)
        server = DOCKER_HUB_AUTH_KEY if host in _DOCKER_HUB_HOSTS else host

        helpers = config.get("credHelpers") or {}
        if isinstance(helpers, dict):
            for key, helper in helpers.items():
                if _hostname(key) in candidates and helper:
                    return _run_helper(str(helper), server)

        auths = config.get("auths") or {}
        if isinstance(auths, dict):
            for name in candidates:
                for key, entry in auths.items():
                    if _hostname(key) == name and isinstance(entry, dict):
                        found = _from_entry(entry, f"{config_path} entry {key!r}")
                        if found is not None:
                            return found

        if store := config.get("credsStore"):
            return _run_helper(str(store), server)
        return None

    return provide
