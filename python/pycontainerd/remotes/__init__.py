"""The registry client: resolve references, fetch and push content, as containerd's
``remotes/docker`` does.

    with Resolver(credentials=docker_config_credentials()) as resolver:
        name, desc = resolver.resolve("busybox")
        with resolver.fetcher(name).fetch(desc) as stream:
            manifest = stream.read()

:class:`Resolver` is thread-safe; its fetchers and pushers share its connections and tokens.
Hosts come from ``certs.d/<host>/hosts.toml`` (:class:`HostsConfig`), credentials from
``--user`` (:func:`static_credentials`) or Docker's ``config.json``
(:func:`docker_config_credentials`). Errors are :mod:`pycontainerd.errdefs` classes; see
:mod:`pycontainerd.remotes.errors` for which.
"""

from __future__ import annotations

from pycontainerd.remotes.auth import Authorizer, Challenge, parse_auth_header, repository_scope
from pycontainerd.remotes.credentials import (
    Credentials,
    chain_credentials,
    docker_config_credentials,
    parse_user,
    static_credentials,
)
from pycontainerd.remotes.errors import Unauthorized
from pycontainerd.remotes.fetcher import Fetcher, FetchStream
from pycontainerd.remotes.hosts import (
    DEFAULT_HOSTS_DIRS,
    HostCapabilities,
    HostsConfig,
    RegistryHost,
    RegistryHosts,
    TLSConfig,
)
from pycontainerd.remotes.pusher import (
    DISTRIBUTION_SOURCE_LABEL,
    Pusher,
    PushResult,
    append_distribution_source_label,
    distribution_source_label_key,
    select_repository_mount_candidate,
)
from pycontainerd.remotes.resolver import MAX_MANIFEST_SIZE, Resolver
from pycontainerd.remotes.transport import NO_RETRY, Reader, RetryPolicy, Transport

__all__ = [
    "DEFAULT_HOSTS_DIRS",
    "DISTRIBUTION_SOURCE_LABEL",
    "MAX_MANIFEST_SIZE",
    "NO_RETRY",
    "Authorizer",
    "Challenge",
    "Credentials",
    "FetchStream",
    "Fetcher",
    "HostCapabilities",
    "HostsConfig",
    "PushResult",
    "Pusher",
    "Reader",
    "RegistryHost",
    "RegistryHosts",
    "Resolver",
    "RetryPolicy",
    "TLSConfig",
    "Transport",
    "Unauthorized",
    "append_distribution_source_label",
    "chain_credentials",
    "distribution_source_label_key",
    "docker_config_credentials",
    "parse_auth_header",
    "parse_user",
    "repository_scope",
    "select_repository_mount_candidate",
    "static_credentials",
]
