"""The built-in plugins, imported by name: adding one is an explicit line here."""

from __future__ import annotations

from pycontainerd.content import plugin as content_plugin
from pycontainerd.daemon.services import (
    content,
    health,
    images,
    introspection,
    namespaces,
    version,
)
from pycontainerd.metadata import plugin as metadata
from pycontainerd.plugin import Registration

__all__ = ["REGISTRATIONS"]

REGISTRATIONS: tuple[Registration, ...] = (
    metadata.registration,
    content_plugin.registration,
    content.service_registration,
    content.registration,
    version.registration,
    namespaces.registration,
    images.registration,
    introspection.registration,
    health.registration,
)
