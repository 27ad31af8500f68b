"""The pycontainerd daemon: config, plugin wiring and the grpc.aio server."""
