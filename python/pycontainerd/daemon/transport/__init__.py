"""gRPC transports implementing :class:`pycontainerd.daemon.rpc.RPCServer`."""
