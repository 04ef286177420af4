"""Running every kind of gRPC method handler inside one async context, for server interceptors.

grpc.aio hands an interceptor a handler of one of four kinds (unary or streaming request and response),
each with its own signature; this wraps any of them so that an interceptor writes its behaviour once, as
a context around the call, and no kind slips through unwrapped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import grpc

Around = Callable[[grpc.aio.ServicerContext], AbstractAsyncContextManager[None]]


async def _responses(produced: Any) -> AsyncIterator[Any]:
    """The responses of a streaming handler, whether an async generator or a coroutine using write()."""
    if hasattr(produced, "__aiter__"):
        async for response in produced:
            yield response
    else:
        await produced


def wrap_handler(handler: grpc.RpcMethodHandler, around: Around) -> grpc.RpcMethodHandler:
    """`handler` with every call run inside `around(context)`, responses of streams included."""
    serializers = (handler.request_deserializer, handler.response_serializer)
    if handler.unary_unary:
        inner_unary_unary = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with around(context):
                return await inner_unary_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, *serializers)
    if handler.unary_stream:
        inner_unary_stream = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with around(context):
                async for response in _responses(inner_unary_stream(request, context)):
                    yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, *serializers)
    if handler.stream_unary:
        inner_stream_unary = handler.stream_unary

        async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            async with around(context):
                return await inner_stream_unary(requests, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, *serializers)
    if handler.stream_stream:
        inner_stream_stream = handler.stream_stream

        async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with around(context):
                async for response in _responses(inner_stream_stream(requests, context)):
                    yield response

        return grpc.stream_stream_rpc_method_handler(stream_stream, *serializers)
    return handler
