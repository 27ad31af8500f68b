"""gRPC services: one module per containerd API service, each an adapter over the core.

A service decodes the request, calls the core and encodes the answer; errors become status codes
in one place, :class:`pycontainerd.daemon.services.errors.ErrdefsInterceptor`.
"""
