"""The built-in plugins, imported by name: adding one is an explicit line here."""

from __future__ import annotations

from pycontainerd.content import plugin as content_plugin
from pycontainerd.daemon import ttrpc as ttrpc_server
from pycontainerd.daemon.services import (
    containers,
    content,
    diff,
    events,
    health,
    images,
    introspection,
    leases,
    namespaces,
    snapshots,
    tasks,
    version,
)
from pycontainerd.gc import scheduler as gc_scheduler
from pycontainerd.metadata import plugin as metadata
from pycontainerd.network import manager as network_manager
from pycontainerd.plugin import Registration
from pycontainerd.runtime import manager as runtime_manager
from pycontainerd.snapshots import plugin as snapshots_plugin

__all__ = ["REGISTRATIONS"]

REGISTRATIONS: tuple[Registration, ...] = (
    events.exchange_registration,
    metadata.registration,
    content_plugin.registration,
    gc_scheduler.registration,
    snapshots_plugin.overlay_registration,
    snapshots_plugin.native_registration,
    content.service_registration,
    leases.service_registration,
    snapshots.service_registration,
    content.registration,
    leases.registration,
    version.registration,
    namespaces.registration,
    images.registration,
    containers.registration,
    snapshots.registration,
    diff.registration,
    events.registration,
    ttrpc_server.registration,
    runtime_manager.registration,
    network_manager.registration,
    tasks.registration,
    introspection.registration,
    health.registration,
)
