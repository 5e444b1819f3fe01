"""OpenTelemetry: one GenAI span per generation in the caller's trace, and the GenAI metrics.

Spans and metrics are read from the SDK's in-memory exporter and reader, handed to the app
in place of the exporting pipeline `GEMINI_SSE_OTEL=on` builds; that pipeline is proven
once against a local OTLP/HTTP receiver.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gemini_sse.server.app import create_app
from gemini_sse.server.providers.fake import FakeProvider
from gemini_sse.server.settings import Settings
from gemini_sse.server.telemetry import Telemetry, provider_names

from .conftest import make_settings
from .servers import run_in_thread
from .sse import parse
from .test_metrics import hang_after, held
from .test_stream_live import wait_for

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
MODEL = "gemini-2.5-flash"
CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "gemini_sse.simulated",
    "gen_ai.request.model": MODEL,
}
ANSWERED = {**CHAT, "gen_ai.response.model": MODEL}


@dataclass
class Recorded:
    """A `Telemetry` whose spans and metrics stay in memory for the test to read."""

    telemetry: Telemetry
    tracer_provider: TracerProvider
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def only_span(self) -> ReadableSpan:
        spans = self.spans()
        assert len(spans) == 1, [span.name for span in spans]
        return spans[0]

    def points(self) -> dict[str, list[HistogramDataPoint]]:
        """Every metric's histogram points, by metric name."""
        data = self.reader.get_metrics_data()
        found: dict[str, list[HistogramDataPoint]] = {}
        for resource in data.resource_metrics if data is not None else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points = found.setdefault(metric.name, [])
                    points.extend(metric.data.data_points)
        return found


@pytest.fixture
def otel() -> Iterator[Recorded]:
    """A `Telemetry` over SDK providers that keep everything in memory."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    telemetry = Telemetry(tracer_provider, meter_provider, make_settings())
    yield Recorded(telemetry, tracer_provider, exporter, reader)
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def post(
    otel: Recorded, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    app = create_app(make_settings(), telemetry=otel.telemetry)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        return await client.post(path, json=body, headers=headers)


def assert_joins_caller_trace(span: ReadableSpan) -> None:
    assert span.context is not None and span.parent is not None
    assert span.context.trace_id == int(TRACE_ID, 16)
    assert span.parent.span_id == int(PARENT_ID, 16)
    assert span.parent.is_remote


def one(points: list[HistogramDataPoint]) -> HistogramDataPoint:
    assert len(points) == 1 and points[0].count == 1
    return points[0]


@pytest.mark.anyio
async def test_an_answer_is_one_client_span_in_the_callers_trace(otel: Recorded) -> None:
    """A normal answer: `chat {model}`, CLIENT, child of the sent traceparent, GenAI attributes."""
    body = {"message": "hi", "temperature": 0.5, "top_p": 0.9, "max_output_tokens": 100}
    headers = {"traceparent": TRACEPARENT, "X-Request-ID": "req-1"}
    response = await post(otel, "/v1/stream", body, headers)
    done = parse(response.content)[-1]
    assert done.event == "done"

    span = otel.only_span()
    assert span.name == f"chat {MODEL}"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert_joins_caller_trace(span)
    attributes = dict(span.attributes or {})
    ttft_s = attributes.pop("gemini_sse.ttft_s")
    assert isinstance(ttft_s, float) and round(ttft_s * 1000, 1) == done.data["ttft_ms"]
    assert attributes == {
        **ANSWERED,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.max_tokens": 100,
        "gen_ai.usage.input_tokens": done.data["usage"]["input_tokens"],
        "gen_ai.usage.output_tokens": done.data["usage"]["output_tokens"],
        "gen_ai.response.finish_reasons": ("stop",),
        "gemini_sse.request_id": "req-1",
        "gemini_sse.outcome": "done",
        "gemini_sse.chunks": 5,
    }


@pytest.mark.anyio
async def test_an_answer_records_the_genai_metrics_once(otel: Recorded) -> None:
    """Duration, input and output tokens, time to first token and per output token: one each."""
    response = await post(otel, "/v1/stream", {"message": "hi"})
    usage = parse(response.content)[-1].data["usage"]
    ttft_s = otel.only_span().attributes["gemini_sse.ttft_s"]
    points = otel.points()

    duration = one(points["gen_ai.client.operation.duration"])
    assert dict(duration.attributes) == ANSWERED
    # The conventions' advised buckets, up to 81.92 s.
    assert duration.explicit_bounds[0] == 0.01 and duration.explicit_bounds[-1] == 81.92
    tokens = {p.attributes["gen_ai.token.type"]: p for p in points["gen_ai.client.token.usage"]}
    assert {kind: (p.count, p.sum) for kind, p in tokens.items()} == {
        "input": (1, usage["input_tokens"]),
        "output": (1, usage["output_tokens"]),
    }
    assert dict(tokens["output"].attributes) == {**ANSWERED, "gen_ai.token.type": "output"}
    first = one(points["gen_ai.server.time_to_first_token"])
    assert dict(first.attributes) == ANSWERED and first.sum == ttft_s
    per_token = one(points["gen_ai.server.time_per_output_token"])
    assert dict(per_token.attributes) == ANSWERED and per_token.sum > 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("simulation", "code", "chunks"),
    [
        ({"fault": "rate_limit"}, "rate_limited", 0),
        ({"fault": "drop", "fail_after": 2}, "upstream_disconnected", 2),
    ],
)
async def test_an_upstream_error_is_an_error_span_with_its_code(
    otel: Recorded, simulation: dict[str, Any], code: str, chunks: int
) -> None:
    """A failing model: status ERROR and `error.type` = the stable code, on span and duration."""
    response = await post(otel, "/v1/stream", {"message": "hi", "simulation": simulation})
    error = parse(response.content)[-1]
    assert (error.event, error.data["code"]) == ("error", code)

    span = otel.only_span()
    assert span.parent is None  # no traceparent sent: a trace of its own
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == code
    attributes = span.attributes or {}
    assert attributes["error.type"] == attributes["gemini_sse.outcome"] == code
    assert attributes["gemini_sse.chunks"] == chunks
    # The model that sent text before failing is the response's model.
    assert ("gen_ai.response.model" in attributes) is (chunks > 0)

    points = otel.points()
    expected = {**(ANSWERED if chunks else CHAT), "error.type": code}
    assert dict(one(points["gen_ai.client.operation.duration"]).attributes) == expected
    # Successful responses only.
    assert "gen_ai.server.time_to_first_token" not in points
    assert "gen_ai.server.time_per_output_token" not in points
    usage = error.data.get("usage")
    tokens = points.get("gen_ai.client.token.usage", [])
    assert sorted(p.sum for p in tokens) == (
        sorted([usage["input_tokens"], usage["output_tokens"]]) if usage else []
    )


def test_a_client_leaving_ends_the_span_as_client_disconnect(otel: Recorded) -> None:
    """The client drops the stream: the span says client_disconnect, not an error."""
    app = create_app(make_settings(), telemetry=otel.telemetry)
    with run_in_thread(app) as running:
        with held(running.url, hang_after(1), headers={"traceparent": TRACEPARENT}):
            pass
        assert wait_for(lambda: len(otel.spans()) == 1)
    span = otel.only_span()
    assert_joins_caller_trace(span)
    assert span.status.status_code is StatusCode.UNSET
    attributes = span.attributes or {}
    assert attributes["gemini_sse.outcome"] == "client_disconnect"
    assert "error.type" not in attributes
    assert attributes["gemini_sse.chunks"] == 1
    duration = one(otel.points()["gen_ai.client.operation.duration"])
    assert "error.type" not in duration.attributes


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True])
async def test_the_openai_route_makes_the_same_span(otel: Recorded, stream: bool) -> None:
    """`/v1/chat/completions`, streamed or not: the same span, in the caller's trace."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 64,
        "stream": stream,
    }
    response = await post(otel, "/v1/chat/completions", body, {"traceparent": TRACEPARENT})
    assert response.status_code == 200

    span = otel.only_span()
    assert span.name == f"chat {MODEL}"
    assert span.kind is SpanKind.CLIENT
    assert_joins_caller_trace(span)
    attributes = span.attributes or {}
    assert {key: attributes[key] for key in ANSWERED} == ANSWERED
    assert attributes["gen_ai.request.max_tokens"] == 64
    assert attributes["gemini_sse.outcome"] == "done"
    assert "gemini_sse.stream_id" not in attributes
    tokens = otel.points()["gen_ai.client.token.usage"]
    assert sorted(p.attributes["gen_ai.token.type"] for p in tokens) == ["input", "output"]


def test_a_resumable_stream_span_carries_its_stream_id(otel: Recorded) -> None:
    """`POST /v1/streams`: the span, ended when the detached producer ends, names the stream."""
    app = create_app(make_settings(), telemetry=otel.telemetry)
    with run_in_thread(app) as running:
        created = httpx.post(
            f"{running.url}/v1/streams",
            json={"message": "hi"},
            headers={"traceparent": TRACEPARENT},
        )
        assert created.status_code == 201
        events = parse(httpx.get(running.url + created.json()["events_url"]).content)
        assert events[-1].event == "done"
        assert wait_for(lambda: len(otel.spans()) == 1)
    span = otel.only_span()
    assert_joins_caller_trace(span)
    attributes = span.attributes or {}
    assert attributes["gemini_sse.stream_id"] == created.json()["id"]
    assert attributes["gemini_sse.outcome"] == "done"


@pytest.mark.anyio
async def test_with_telemetry_off_no_span_is_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """GEMINI_SSE_OTEL unset: the app holds no telemetry and never starts a span."""
    started: list[object] = []
    monkeypatch.setattr(Telemetry, "start", lambda *args, **kwargs: started.append(args))
    assert Telemetry.from_settings(make_settings()) is None
    app = create_app(make_settings())
    assert app.state.gateway.telemetry is None
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        response = await client.post(
            "/v1/stream", json={"message": "hi"}, headers={"traceparent": TRACEPARENT}
        )
    assert parse(response.content)[-1].event == "done"
    assert started == []


def test_provider_names_follow_the_conventions() -> None:
    """Our providers map to the conventions' well-known `gen_ai.provider.name` values."""
    assert provider_names(make_settings()) == {
        "vertex": "gcp.vertex_ai",
        "genai": "gcp.vertex_ai",
        "openai": "openai",
        "fake": "gemini_sse.simulated",
    }
    keyed = make_settings(genai_api_key="k", openai_azure_endpoint="https://x.openai.azure.com")
    assert provider_names(keyed)["genai"] == "gcp.gemini"
    assert provider_names(keyed)["openai"] == "azure.ai.openai"


class _Receiver(BaseHTTPRequestHandler):
    """A local OTLP/HTTP endpoint: keeps each body posted, by path."""

    received: dict[str, list[bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.setdefault(self.path, []).append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, dict[str, list[bytes]]]]:
    """A local OTLP/HTTP endpoint: its URL, and the bodies posted to it by path."""
    received: dict[str, list[bytes]] = {}
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _clear_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


def test_on_exports_spans_and_metrics_over_otlp_http(
    monkeypatch: pytest.MonkeyPatch, otlp_receiver: tuple[str, dict[str, list[bytes]]]
) -> None:
    """GEMINI_SSE_OTEL=on: OTEL_* variables steer an OTLP/HTTP export, flushed at exit."""
    url, received = otlp_receiver
    _clear_otel_environment(monkeypatch)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-under-test")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "600000")  # only the final export
    with run_in_thread(create_app(make_settings(otel="on"))) as running:
        response = httpx.post(
            f"{running.url}/v1/stream", json={"message": "hi"}, headers={"traceparent": TRACEPARENT}
        )
        assert parse(response.content)[-1].event == "done"
    # The server has stopped: its lifespan shut the providers down, which exports.

    traces = ExportTraceServiceRequest()
    for body in received["/v1/traces"]:
        traces.MergeFromString(body)
    [resource_spans] = traces.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "gateway-under-test"
    assert service["service.instance.id"]  # each process a series of its own
    [span] = [s for scope in resource_spans.scope_spans for s in scope.spans]
    assert span.name == f"chat {MODEL}"
    assert span.kind == SpanProto.SPAN_KIND_CLIENT
    assert span.trace_id.hex() == TRACE_ID and span.parent_span_id.hex() == PARENT_ID

    metrics = ExportMetricsServiceRequest()
    for body in received["/v1/metrics"]:
        metrics.MergeFromString(body)
    names = {
        metric.name
        for resource in metrics.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert names == {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "gen_ai.server.time_to_first_token",
        "gen_ai.server.time_per_output_token",
    }


@pytest.mark.parametrize(
    ("variable", "value"),
    [("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_TRACES_EXPORTER", "zipkin")],
)
def test_on_refuses_an_export_it_cannot_do(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """An OTLP protocol or exporter the gateway does not ship stops the start, loudly."""
    _clear_otel_environment(monkeypatch)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=value):
        Telemetry.from_settings(make_settings(otel="on"))


def test_the_setting_reads_gemini_sse_otel(monkeypatch: pytest.MonkeyPatch) -> None:
    """GEMINI_SSE_OTEL picks the mode; off is the default."""
    assert Settings(_env_file=None).otel == "off"
    monkeypatch.setenv("GEMINI_SSE_OTEL", "global")
    assert Settings(_env_file=None).otel == "global"


@pytest.mark.anyio
async def test_a_fallback_answer_names_the_model_that_answered(otel: Recorded) -> None:
    """The model asked for fails first: the span's response model is the fallback target's."""
    settings = make_settings(fallback=["fake:gemini-2.5-pro"])
    limited = FakeProvider(make_settings(fake_fault="rate_limit"))
    app = create_app(settings, provider=limited, telemetry=otel.telemetry)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        response = await client.post("/v1/stream", json={"message": "hi"})
    done = parse(response.content)[-1]
    assert (done.event, done.data["model"]) == ("done", "gemini-2.5-pro")

    attributes = otel.only_span().attributes or {}
    assert attributes["gen_ai.request.model"] == MODEL
    assert attributes["gen_ai.response.model"] == "gemini-2.5-pro"
    assert attributes["gemini_sse.fallback"] == "fake:gemini-2.5-pro"
    duration = one(otel.points()["gen_ai.client.operation.duration"])
    assert duration.attributes["gen_ai.response.model"] == "gemini-2.5-pro"


@pytest.mark.anyio
async def test_an_instrumented_apps_request_span_is_the_parent(otel: Recorded) -> None:
    """When something already made a span for the request, the generation's span is its child."""
    app = create_app(make_settings(), telemetry=otel.telemetry)
    tracer = otel.tracer_provider.get_tracer("http-instrumentation")

    async def instrumented(scope: Any, receive: Any, send: Any) -> None:
        with tracer.start_as_current_span("POST /v1/stream", kind=SpanKind.SERVER):
            await app(scope, receive, send)

    transport = httpx.ASGITransport(instrumented)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        await client.post(
            "/v1/stream", json={"message": "hi"}, headers={"traceparent": TRACEPARENT}
        )
    by_kind = {span.kind: span for span in otel.spans()}
    server, chat = by_kind[SpanKind.SERVER], by_kind[SpanKind.CLIENT]
    assert server.context is not None and chat.parent is not None
    assert chat.parent.span_id == server.context.span_id
    assert not chat.parent.is_remote
