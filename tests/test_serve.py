"""`serve`'s listening socket: what every accepted connection inherits from it."""

from __future__ import annotations

import socket

import pytest
import uvicorn

from gemini_sse.server.serve import listening_socket
from gemini_sse.server.settings import Settings


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="Linux only")
def test_accepted_connections_give_up_on_a_peer_after_the_send_timeout() -> None:
    """TCP_USER_TIMEOUT is the send timeout, on the listening socket and so on each
    connection accepted from it (the reliability suite's slow readers show the effect)."""
    config = uvicorn.Config("gemini_sse.server.app:create_app", host="127.0.0.1", port=0)
    server = listening_socket(config, Settings(send_timeout_s=2.5))
    with server, socket.socket() as client:
        server.listen()
        client.connect(server.getsockname())
        accepted, _ = server.accept()
        with accepted:
            for sock in (server, accepted):
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 2500
