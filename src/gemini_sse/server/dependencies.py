"""What routes take from the request besides its body: the gateway, the caller, the id."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .auth import Caller
from .gateway import Gateway


async def get_gateway(request: Request) -> Gateway:
    # async: FastAPI would run a plain function in its thread pool, for every request.
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


async def authorized(request: Request, gateway: GatewayDep) -> Caller:
    """The caller of an API route: its key checked (when keys are set), its request counted.

    Also in `request.state` (`caller`, `key_id`) for code that does not declare it.
    """
    client = request.client.host if request.client is not None else None
    caller = await gateway.authorize(request.headers.get("authorization"), client)
    request.state.caller = caller
    request.state.key_id = caller.key_id
    return caller


CallerDep = Annotated[Caller, Depends(authorized)]


def request_id_of(request: Request) -> str | None:
    """The request's id (`X-Request-ID`), as `RequestContext` set it."""
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None
