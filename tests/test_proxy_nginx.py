"""The gateway behind a real nginx, configured as docs/operations.md ("Behind nginx") says.

Each test runs the gateway (simulated model) on 127.0.0.1 and its own nginx in front of
it. The first group proves the recommended configuration: incremental delivery on every
streaming route, heartbeats, cancellation when a client leaves, resuming with
Last-Event-ID, request ids. The second changes one line of it and shows what the client
and the gateway see then: the evidence behind the docs' warnings.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from gemini_sse import Client
from gemini_sse._decoder import SSEDecoder

from .nginx import NginxFactory, changed, nginx_fixture, recommended_site  # noqa: F401
from .servers import RunningServer, wait_for
from .sse import Received, iter_events, names, text


def model_stats(running: RunningServer) -> Any:
    return running.gateway.provider.stats  # type: ignore[attr-defined]


# The recommended site with one line changed: what the second group of tests runs.
BUFFERING_ON = {"proxy_buffering off;": "proxy_buffering on;"}
# A gateway without `X-Accel-Buffering: no`, or an nginx told to ignore it.
BUFFERING_WITHOUT_HEADER = {
    "proxy_buffering off;": "proxy_buffering on;\n        proxy_ignore_headers X-Accel-Buffering;"
}
GZIP_ON = {"gzip off;": "gzip on;\n        gzip_types text/event-stream;"}


def gzip_with_buffering_site() -> str:
    """The recommended site with gzip on and buffering that ignores the gateway's header."""
    return changed(changed(recommended_site(), GZIP_ON), BUFFERING_WITHOUT_HEADER)


# --- What each streaming route looks like to a client, chunk by chunk ------------------


def stream_route(base: str) -> Iterator[tuple[str, bool]]:
    """`/v1/stream`: (event name, whether it ends the stream) for each event."""
    with httpx.stream("POST", f"{base}/v1/stream", json={"message": "hi"}) as response:
        assert response.status_code == 200
        for event in iter_events(response.iter_raw()):
            yield event.event, event.event in ("done", "error")


def resumable_route(base: str) -> Iterator[tuple[str, bool]]:
    """`/v1/streams/{id}/events`, the stream started through nginx too."""
    created = httpx.post(f"{base}/v1/streams", json={"message": "hi"})
    assert created.status_code == 201
    with httpx.stream("GET", base + created.json()["events_url"]) as response:
        assert response.status_code == 200
        for event in iter_events(response.iter_raw()):
            yield event.event, event.event in ("done", "error")


def openai_route(base: str) -> Iterator[tuple[str, bool]]:
    """`/v1/chat/completions` with `stream: true`: content deltas, then `[DONE]`."""
    body = {
        "model": "gemini-2.5-flash",
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    decoder = SSEDecoder()
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            for sse in decoder.feed(chunk):
                if sse.data == "[DONE]":
                    yield "[DONE]", True
                    continue
                delta = json.loads(sse.data)["choices"][0]["delta"]
                yield ("token" if delta.get("content") else "other"), False


ROUTES = {
    "stream": stream_route,
    "streams_events": resumable_route,
    "chat_completions": openai_route,
}


def first_token_before_model_finished(
    serve: Callable[..., RunningServer], nginx: NginxFactory, site: str
) -> tuple[bool, list[str]]:
    """Stream `/v1/stream` through nginx serving `site`; was the model still running when the
    first token arrived? Also returns the events' names."""
    running = serve(fake_chunks=4, fake_first_delay_ms=10, fake_delay_ms=300)
    stats = model_stats(running)
    proxy = nginx(running.url, site=site)
    seen = [(name, stats.completed == 0) for name, _ in stream_route(proxy.url)]
    model_running = next(still for name, still in seen if name == "token")
    return model_running, [name for name, _ in seen]


# --- The recommended configuration --------------------------------------------------------


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_streams_arrive_incrementally_through_nginx(
    route: str, serve: Callable[..., RunningServer], nginx: NginxFactory
) -> None:
    """Through nginx, every streaming route's first token arrives while the model still runs."""
    running = serve(fake_chunks=4, fake_first_delay_ms=10, fake_delay_ms=300)
    stats = model_stats(running)
    proxy = nginx(running.url)
    seen = [(name, last, stats.completed) for name, last in ROUTES[route](proxy.url)]
    first_token = next(s for s in seen if s[0] == "token")
    assert first_token[2] == 0, "the model had finished before the first token got through"
    assert seen[-1][1], "the stream ended without its terminal event"
    assert [s[0] for s in seen].count("token") == 4
    assert stats.completed == 1


def test_heartbeats_pass_through_nginx_while_the_model_is_silent(
    serve: Callable[..., RunningServer], nginx: NginxFactory
) -> None:
    """`: ping` comments reach the client through nginx before the model's first chunk."""
    running = serve(heartbeat_s=0.1, fake_chunks=1, fake_first_delay_ms=1500)
    proxy = nginx(running.url)
    pings_before_text = 0
    body = b""
    with httpx.stream("POST", f"{proxy.url}/v1/stream", json={"message": "hi"}) as response:
        for chunk in response.iter_raw():
            body += chunk
            if b"event: token" not in body:
                pings_before_text = body.count(b": ping")
    assert pings_before_text >= 3
    assert body.rstrip().split(b"\n\n")[-1].startswith(b"id: 3\nevent: done")


def test_a_client_leaving_nginx_cancels_its_generation(
    serve: Callable[..., RunningServer], nginx: NginxFactory
) -> None:
    """A client that disconnects from nginx gets the gateway's model call cancelled."""
    running = serve(fake_chunks=50, fake_first_delay_ms=10, fake_delay_ms=200)
    stats = model_stats(running)
    proxy = nginx(running.url)
    with httpx.stream("POST", f"{proxy.url}/v1/stream", json={"message": "hi"}) as response:
        for event in iter_events(response.iter_raw()):
            if event.event == "token":
                assert httpx.get(f"{running.url}/healthz").json()["streams"] == 1
                break
    assert wait_for(lambda: stats.cancelled == 1)
    assert wait_for(lambda: httpx.get(f"{proxy.url}/healthz").json()["streams"] == 0)
    assert stats.completed == 0
    # nginx's own account of it.
    assert "client prematurely closed connection, so upstream connection is closed too" in (
        proxy.error_log()
    )


def test_resuming_with_last_event_id_through_nginx(
    serve: Callable[..., RunningServer], nginx: NginxFactory
) -> None:
    """Through nginx, a reader that reconnects with Last-Event-ID gets exactly the rest."""
    running = serve(fake_chunks=6, fake_first_delay_ms=10, fake_delay_ms=100)
    proxy = nginx(running.url)
    created = httpx.post(f"{proxy.url}/v1/streams", json={"message": "hi"}).json()
    events_url = proxy.url + created["events_url"]
    before: list[Received] = []
    with httpx.stream("GET", events_url) as response:
        for event in iter_events(response.iter_raw()):
            before.append(event)
            if event.id == "3":
                break
    with httpx.stream("GET", events_url, headers={"Last-Event-ID": "3"}) as response:
        after = list(iter_events(response.iter_raw()))
    whole = list(iter_events([httpx.get(events_url).content]))
    assert [e.id for e in before + after] == [str(n) for n in range(1, len(whole) + 1)]
    assert names(after)[-1] == "done"
    assert text(before + after) == text(whole)


def test_request_ids_pass_through_nginx(
    serve: Callable[..., RunningServer], nginx: NginxFactory
) -> None:
    """A client's X-Request-ID reaches the gateway; without one, nginx's own id is used."""
    running = serve()
    proxy = nginx(running.url)
    given = httpx.post(
        f"{proxy.url}/v1/stream", json={"message": "hi"}, headers={"X-Request-ID": "trace-123"}
    )
    assert given.headers["x-request-id"] == "trace-123"
    made = httpx.post(f"{proxy.url}/v1/stream", json={"message": "hi"}).headers["x-request-id"]
    assert wait_for(lambda: any(line[3] == made for line in proxy.access_log()))
    (line,) = [line for line in proxy.access_log() if line[3] == made]
    assert line[2] == made  # nginx's $request_id, sent on as X-Request-ID


def test_a_stalled_client_behind_nginx_is_dropped_by_the_send_timeout(
    serve: Callable[..., RunningServer], nginx: NginxFactory
) -> None:
    """Unbuffered, nginx passes a stalled client's backpressure on: the gateway drops it."""
    stats = stall_a_client_behind(serve, nginx, recommended_site())
    assert stats.cancelled == 1
    assert stats.completed == 0


# --- One line changed: what breaks, and what does not -------------------------------------


def test_the_gateway_header_keeps_proxy_buffering_on_from_delaying_events(
    serve: Callable[..., RunningServer], nginx: NginxFactory
) -> None:
    """With `proxy_buffering on`, the gateway's X-Accel-Buffering: no still makes nginx stream."""
    site = changed(recommended_site(), BUFFERING_ON)
    model_running, seen = first_token_before_model_finished(serve, nginx, site)
    assert model_running
    assert seen[-1] == "done"


def test_nginx_hides_the_buffering_header_from_clients(
    serve: Callable[..., RunningServer], nginx: NginxFactory
) -> None:
    """The gateway sends X-Accel-Buffering: no; nginx acts on it and does not pass it on."""
    running = serve()
    proxy = nginx(running.url)
    direct = httpx.post(f"{running.url}/v1/stream", json={"message": "hi"})
    proxied = httpx.post(f"{proxy.url}/v1/stream", json={"message": "hi"})
    assert direct.headers["x-accel-buffering"] == "no"
    assert "x-accel-buffering" not in proxied.headers
    assert proxied.headers["content-type"].startswith("text/event-stream")
    assert "content-encoding" not in proxied.headers


def test_buffering_without_the_header_still_forwards_events_as_they_arrive(
    serve: Callable[..., RunningServer], nginx: NginxFactory
) -> None:
    """Buffering, header ignored: nginx still forwards what it has read, event by event."""
    site = changed(recommended_site(), BUFFERING_WITHOUT_HEADER)
    model_running, seen = first_token_before_model_finished(serve, nginx, site)
    assert model_running
    assert seen[-1] == "done"


def test_buffering_without_the_header_hides_a_stalled_client_from_the_gateway(
    serve: Callable[..., RunningServer], nginx: NginxFactory
) -> None:
    """Buffering, header ignored: nginx reads the whole answer for a client that reads nothing."""
    site = changed(recommended_site(), BUFFERING_WITHOUT_HEADER)
    stats = stall_a_client_behind(serve, nginx, site)
    # The model ran to the end and every token was paid for, though the client read none.
    assert stats.completed == 1
    assert stats.cancelled == 0


def test_gzip_alone_still_streams_because_nginx_flushes_each_unbuffered_chunk(
    serve: Callable[..., RunningServer], nginx: NginxFactory
) -> None:
    """gzip on for text/event-stream, header honoured: compressed, yet still incremental."""
    running = serve(fake_chunks=4, fake_first_delay_ms=10, fake_delay_ms=300)
    stats = model_stats(running)
    proxy = nginx(running.url, site=changed(recommended_site(), GZIP_ON))
    headers = {"Accept-Encoding": "gzip"}
    with httpx.stream(
        "POST", f"{proxy.url}/v1/stream", json={"message": "hi"}, headers=headers
    ) as r:
        assert r.headers["content-encoding"] == "gzip"
        # iter_bytes: decompressed as it comes, the way a browser reads it.
        seen = [(event.event, stats.completed) for event in iter_events(r.iter_bytes())]
    assert next(done for name, done in seen if name == "token") == 0
    assert seen[-1][0] == "done"


def test_gzip_with_buffering_holds_back_the_whole_answer_and_its_heartbeats(
    serve: Callable[..., RunningServer], nginx: NginxFactory
) -> None:
    """gzip plus buffering without the header: nothing reaches the client until the end."""
    running = serve(heartbeat_s=0.1, fake_chunks=3, fake_first_delay_ms=1000, fake_delay_ms=100)
    stats = model_stats(running)
    site = gzip_with_buffering_site()
    proxy = nginx(running.url, site=site)
    headers = {"Accept-Encoding": "gzip"}
    with httpx.stream(
        "POST", f"{proxy.url}/v1/stream", json={"message": "hi"}, headers=headers
    ) as r:
        assert r.headers["content-encoding"] == "gzip"
        arrivals = [(stats.completed, chunk) for chunk in r.iter_bytes() if chunk]
    body = b"".join(chunk for _, chunk in arrivals)
    # The gateway sent a dozen heartbeats while the model was silent ...
    assert body.count(b": ping") >= 5
    # ... and not one byte of them, nor any token, got through before the model had finished.
    assert all(completed == 1 for completed, _ in arrivals)
    assert body.rstrip().endswith(b"}") and b"event: done" in body


def test_the_client_asks_for_no_compression_so_a_gzip_proxy_cannot_hold_its_answer_back(
    serve: Callable[..., RunningServer], nginx: NginxFactory
) -> None:
    """Behind the same gzip-and-buffering nginx, `Client` gets each token as it is written."""
    running = serve(fake_chunks=4, fake_first_delay_ms=10, fake_delay_ms=300)
    stats = model_stats(running)
    site = gzip_with_buffering_site()
    proxy = nginx(running.url, site=site)
    with Client(proxy.url) as client:
        # How far the model had got when each event arrived.
        seen = [(event.event, stats.completed) for event in client.stream("hi")]
    tokens = [completed for name, completed in seen if name == "token"]
    assert len(tokens) == 4 and tokens[0] == 0  # the first token came while the model wrote
    assert seen[-1][0] == "done"


def test_ignoring_client_aborts_only_delays_the_cancel_to_the_next_write(
    serve: Callable[..., RunningServer], nginx: NginxFactory
) -> None:
    """`proxy_ignore_client_abort on`: nginx notices a gone client only when a write fails."""
    running = serve(fake_chunks=10, fake_first_delay_ms=10, fake_delay_ms=100)
    stats = model_stats(running)
    site = changed(
        recommended_site(), {"proxy_ignore_client_abort off;": "proxy_ignore_client_abort on;"}
    )
    proxy = nginx(running.url, site=site)
    with httpx.stream("POST", f"{proxy.url}/v1/stream", json={"message": "hi"}) as response:
        for event in iter_events(response.iter_raw()):
            if event.event == "token":
                break
    # A stream keeps writing, so the generation is still cancelled, but only once nginx's
    # next write to the gone client fails, not when the client leaves.
    assert wait_for(lambda: stats.cancelled == 1)
    assert stats.completed == 0
    log = proxy.error_log()
    assert "client prematurely closed connection" not in log
    assert re.search(r"writev?\(\) failed \((32: Broken pipe|104: Connection reset)", log)


def test_a_read_timeout_shorter_than_the_silence_cuts_a_stream_without_heartbeats(
    serve: Callable[..., RunningServer], nginx: NginxFactory
) -> None:
    """A silence longer than proxy_read_timeout, no heartbeats: nginx cuts the stream short."""
    running = serve(heartbeat_s=0, fake_chunks=2, fake_first_delay_ms=2500)
    stats = model_stats(running)
    site = changed(recommended_site(), {"proxy_read_timeout 60s;": "proxy_read_timeout 1s;"})
    proxy = nginx(running.url, site=site)
    body = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", f"{proxy.url}/v1/stream", json={"message": "hi"}) as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_raw():
            body += chunk
    assert b"event: done" not in body and b"event: error" not in body
    assert wait_for(lambda: stats.cancelled == 1)


def test_heartbeats_keep_a_silent_stream_open_past_the_read_timeout(
    serve: Callable[..., RunningServer], nginx: NginxFactory
) -> None:
    """The same silence with heartbeats well under proxy_read_timeout: the answer arrives whole."""
    running = serve(heartbeat_s=0.2, fake_chunks=2, fake_first_delay_ms=2500)
    site = changed(recommended_site(), {"proxy_read_timeout 60s;": "proxy_read_timeout 1s;"})
    proxy = nginx(running.url, site=site)
    with httpx.stream("POST", f"{proxy.url}/v1/stream", json={"message": "hi"}) as response:
        body = b"".join(response.iter_raw())
    assert body.count(b": ping") >= 5
    assert body.rstrip().split(b"\n\n")[-1].startswith(b"id: 5\nevent: done")


# --- A client that stops reading ------------------------------------------------------------


def stall_a_client_behind(
    serve: Callable[..., RunningServer], nginx: NginxFactory, site: str
) -> Any:
    """A large answer to a client (through nginx) that never reads; returns the model's
    stats once the gateway has either dropped the client or finished the answer."""
    running = serve(
        send_timeout_s=0.5,
        fake_chunks=5000,
        fake_chunk_chars=4096,  # 20 MB: more than every socket buffer on the way together
        fake_delay_ms=0,
        fake_first_delay_ms=0,
        total_timeout_s=60,
    )
    stats = model_stats(running)
    proxy = nginx(running.url, site=site)
    port = int(proxy.url.rsplit(":", 1)[1])
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        body = b'{"message": "flood"}'
        sock.sendall(
            b"POST /v1/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        assert wait_for(lambda: stats.cancelled + stats.completed == 1, seconds=30)
        assert wait_for(lambda: not running.gateway.live)
    return stats
