"""``containerd.services.introspection.v1.Introspection``: the plugins and the server's UUID."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

from google.protobuf import empty_pb2
from google.rpc import status_pb2

from pycontainerd import errdefs, filters
from pycontainerd.api.containerd.services.introspection.v1 import (
    introspection_pb2,
)
from pycontainerd.api.containerd.types import platform_pb2
from pycontainerd.daemon.rpc import RPCServer, ServicerContext
from pycontainerd.plugin import InitContext, Plugin, PluginSet, Registration, Type

__all__ = ["IntrospectionService", "registration"]


def _plugin_to_proto(plugin: Plugin) -> introspection_pb2.Plugin:
    reg = plugin.registration
    out = introspection_pb2.Plugin(
        type=reg.type,
        id=reg.id,
        requires=list(reg.requires),
        platforms=[
            platform_pb2.Platform(os=p.os, architecture=p.architecture, variant=p.variant)
            for p in plugin.meta.platforms
        ],
        exports=plugin.meta.exports,
        capabilities=plugin.meta.capabilities,
    )
    if plugin.error is not None:
        code = errdefs.to_code(plugin.error)
        out.init_err.CopyFrom(
            status_pb2.Status(code=int(code), message=str(plugin.error) or repr(plugin.error))
        )
    return out


def _adapt(plugin: introspection_pb2.Plugin) -> filters.Adaptor:
    def field(path: Sequence[str]) -> tuple[str, bool]:
        if not path:
            return "", False
        if path[0] == "type":
            return plugin.type, bool(plugin.type)
        if path[0] == "id":
            return plugin.id, bool(plugin.id)
        return "", False

    return filters.AdaptorFunc(field)


class IntrospectionService:
    """Lists plugins (with containerd's filters) and keeps the server's UUID under its root."""

    def __init__(self, plugins: PluginSet, root: Path) -> None:
        self._plugins = plugins
        self._root = root
        self._uuid: str | None = None

    def register(self, server: RPCServer) -> None:
        server.add_service(introspection_pb2.DESCRIPTOR.services_by_name["Introspection"], self)

    async def Plugins(
        self, request: introspection_pb2.PluginsRequest, context: ServicerContext
    ) -> introspection_pb2.PluginsResponse:
        match = filters.parse(*request.filters)
        plugins = [_plugin_to_proto(p) for p in self._plugins.all()]
        return introspection_pb2.PluginsResponse(
            plugins=[p for p in plugins if match.match(_adapt(p))]
        )

    async def Server(
        self, request: empty_pb2.Empty, context: ServicerContext
    ) -> introspection_pb2.ServerResponse:
        return introspection_pb2.ServerResponse(uuid=self.uuid())

    def uuid(self) -> str:
        """The server's UUID, made on first use and kept across restarts."""
        if self._uuid is None:
            self._uuid = _load_or_create_uuid(self._root / "uuid")
        return self._uuid


def _load_or_create_uuid(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        pass
    else:
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise errdefs.FailedPrecondition(
                f"server uuid {path}: {text!r} is not a uuid"
            ) from None
    value = str(uuid.uuid4())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(value)
    tmp.replace(path)
    return value


def _init(ic: InitContext) -> IntrospectionService:
    return IntrospectionService(ic.plugins, ic.root)


registration = Registration(type=Type.GRPC, id="introspection", init=_init)
