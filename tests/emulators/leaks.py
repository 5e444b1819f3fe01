"""What a provider leaves open, found among the live objects.

A client library keeps its connection pool a few attributes deep (an aiohttp session in
google-auth's session in a GAPIC transport, an httpx client in the openai SDK ...). Looking
at every live object instead lets a test ask "is anything that was opened still open?"
without depending on that layout.
"""

from __future__ import annotations

import contextlib
import gc

import aiohttp
import grpc
import httpx

# The openai SDK streams with httpx's successor when it is installed.
_HTTPX_CLIENTS: tuple[type, ...] = (httpx.Client, httpx.AsyncClient)
with contextlib.suppress(ImportError):
    import httpx2

    _HTTPX_CLIENTS += (httpx2.Client, httpx2.AsyncClient)


def open_pools() -> list[object]:
    """Every aiohttp session, httpx client and gRPC channel alive and not closed."""
    return [obj for obj in gc.get_objects() if _is_open(obj)]


def opened_since(before: list[object]) -> list[object]:
    """The pools open now that were not open in `before` (an `open_pools()` result)."""
    known = {id(obj) for obj in before}  # `before` keeps them alive: no id is reused
    return [obj for obj in open_pools() if id(obj) not in known]


def still_open(pools: list[object]) -> list[object]:
    return [obj for obj in pools if _is_open(obj)]


def responses_holding_a_connection() -> list[aiohttp.ClientResponse]:
    """aiohttp responses still alive (garbage in a cycle included) that hold a connection.

    Such a connection is only given back when the response is finalised; if the garbage
    collector finalises the connection first, aiohttp reports it as unclosed.
    """
    responses = [obj for obj in gc.get_objects() if issubclass(type(obj), aiohttp.ClientResponse)]
    return [response for response in responses if response.connection is not None]


def _is_open(obj: object) -> bool:
    # `type()`, not `isinstance()`: that reads `__class__`, which the openai module's lazy
    # proxies answer by building the SDK's module-level client.
    kind = type(obj)
    if issubclass(kind, aiohttp.ClientSession):
        return not obj.closed  # type: ignore[attr-defined]
    if issubclass(kind, _HTTPX_CLIENTS):
        return not obj.is_closed  # type: ignore[attr-defined]
    if issubclass(kind, grpc.aio.Channel):
        return obj.get_state() != grpc.ChannelConnectivity.SHUTDOWN  # type: ignore[attr-defined]
    return False
