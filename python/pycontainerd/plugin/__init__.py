"""Explicit plugin registrations and their initialization, as containerd's ``plugin`` package.

A :class:`Registration` names a plugin's type, id, the types it requires, its config class and
its init function. The daemon passes the built-in registrations to :func:`load`, which orders
them by requirement and initializes each; a plugin that fails keeps its error, and the daemon
goes on without it.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pycontainerd import errdefs
from pycontainerd.platforms import Platform

__all__ = [
    "InitContext",
    "Meta",
    "Plugin",
    "PluginSet",
    "Registration",
    "SkipPlugin",
    "Type",
    "load",
]

log = logging.getLogger(__name__)


class Type(StrEnum):
    """Plugin types: containerd's strings."""

    INTERNAL = "io.containerd.internal.v1"
    RUNTIME_V2 = "io.containerd.runtime.v2"
    SERVICE = "io.containerd.service.v1"
    GRPC = "io.containerd.grpc.v1"
    SNAPSHOT = "io.containerd.snapshotter.v1"
    TASK_MONITOR = "io.containerd.monitor.v1"
    DIFF = "io.containerd.differ.v1"
    METADATA = "io.containerd.metadata.v1"
    CONTENT = "io.containerd.content.v1"
    GC = "io.containerd.gc.v1"
    EVENT = "io.containerd.event.v1"
    LEASE = "io.containerd.lease.v1"


class SkipPlugin(errdefs.ContainerdError):
    """Raised by an init function when the plugin does not apply on this host."""

    def __init__(self, message: str) -> None:
        # ctr tells skipped plugins by this phrase in the init error.
        super().__init__(f"skip plugin: {message}" if message else "skip plugin")


@dataclass(frozen=True)
class Registration:
    """How to make one plugin: containerd's ``plugin.Registration``."""

    type: str
    id: str
    init: Callable[[InitContext], object]
    requires: tuple[str, ...] = ()
    #: A dataclass of the plugin's settings; its defaults are printed by ``config default``.
    config: builtins.type[Any] | None = None

    @property
    def uri(self) -> str:
        return f"{self.type}.{self.id}"


@dataclass
class Meta:
    """What a plugin says of itself once initialized."""

    platforms: list[Platform] = field(default_factory=list)
    exports: dict[str, str] = field(default_factory=dict)
    capabilities: list[str] = field(default_factory=list)


@dataclass
class Plugin:
    """An initialized plugin: its instance, or the error that stopped it."""

    registration: Registration
    meta: Meta
    instance: object = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class PluginSet:
    """The plugins in initialization order."""

    def __init__(self) -> None:
        self._ordered: list[Plugin] = []
        self._by_uri: dict[str, Plugin] = {}

    def add(self, plugin: Plugin) -> None:
        uri = plugin.registration.uri
        if uri in self._by_uri:
            raise errdefs.AlreadyExists(f"plugin {uri}: already initialized")
        self._ordered.append(plugin)
        self._by_uri[uri] = plugin

    def all(self) -> list[Plugin]:
        return list(self._ordered)

    def get(self, type_: str, id_: str | None = None) -> object:
        """The instance of a plugin of ``type_`` (and ``id_``) that initialized without error."""
        failures: list[str] = []
        for plugin in self._ordered:
            reg = plugin.registration
            if reg.type != type_ or (id_ is not None and reg.id != id_):
                continue
            if plugin.error is None:
                return plugin.instance
            failures.append(f"{reg.uri}: {plugin.error}")
        what = f"{type_}.{id_}" if id_ else type_
        if failures:
            raise errdefs.FailedPrecondition(f"plugin {what} failed: {'; '.join(failures)}")
        raise errdefs.NotFound(f"no plugins registered for {what}")

    def instances(self, type_: str) -> dict[str, object]:
        """Every working instance of ``type_``, by id."""
        return {
            p.registration.id: p.instance
            for p in self._ordered
            if p.registration.type == type_ and p.error is None
        }


@dataclass
class InitContext:
    """What an init function is given: its directories, its config and the plugins before it."""

    root: Path
    state: Path
    config: Any
    plugins: PluginSet
    address: str
    meta: Meta = field(default_factory=Meta)

    def get(self, type_: str, id_: str | None = None) -> object:
        return self.plugins.get(type_, id_)


def order(registrations: Iterable[Registration]) -> list[Registration]:
    """Registrations sorted so each comes after every type it requires (stable otherwise)."""
    regs = list(registrations)
    seen: set[str] = set()
    out: list[Registration] = []
    visiting: set[str] = set()

    def visit(reg: Registration) -> None:
        if reg.uri in seen:
            return
        if reg.uri in visiting:
            raise errdefs.FailedPrecondition(f"plugin {reg.uri}: circular requirement")
        visiting.add(reg.uri)
        for required in reg.requires:
            for dep in regs:
                if dep is not reg and required in ("*", dep.type):
                    visit(dep)
        visiting.discard(reg.uri)
        seen.add(reg.uri)
        out.append(reg)

    for reg in regs:
        visit(reg)
    return out


def load(
    registrations: Sequence[Registration],
    *,
    root: Path,
    state: Path,
    address: str,
    configs: Mapping[str, object],
    disabled: Iterable[str] = (),
) -> PluginSet:
    """Initialize every registration not disabled, in requirement order.

    ``configs`` maps a plugin URI to its decoded config object. Errors are kept on the plugin,
    logged, and do not stop the others.
    """
    disabled_set = set(disabled)
    plugins = PluginSet()
    for reg in order(registrations):
        if reg.uri in disabled_set:
            log.info("plugin %s is disabled", reg.uri)
            continue
        ctx = InitContext(
            root=root / reg.uri,
            state=state / reg.uri,
            config=configs.get(reg.uri, reg.config() if reg.config else None),
            plugins=plugins,
            address=address,
        )
        plugin = Plugin(registration=reg, meta=ctx.meta)
        log.debug("loading plugin %s", reg.uri)
        try:
            plugin.instance = reg.init(ctx)
        except SkipPlugin as exc:
            plugin.error = exc
            log.info("skip loading plugin %s: %s", reg.uri, exc)
        except Exception as exc:
            plugin.error = exc
            log.warning("failed to load plugin %s: %s", reg.uri, exc)
        plugins.add(plugin)
    return plugins
