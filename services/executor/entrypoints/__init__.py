"""How the executor is driven: the request consumer, the worker loop, the admin gRPC API, the process."""
