"""OpenTelemetry traces and metrics of each generation, after the GenAI semantic conventions.

Off unless `GEMINI_SSE_OTEL` says otherwise (docs/operations.md, "OpenTelemetry"). Off,
the gateway holds no `Telemetry`, and a generation costs one `is None` check when it
starts and one when it ends. On, the work is per generation and never per token: a span
starts when the generation is admitted (`Telemetry.start`) and ends, with its attributes
and the metrics, when the gateway closes the generation's books (`GenerationTrace.end`,
from `Gateway.finish`). Everything recorded is what the gateway counts anyway
(`Generation.ttft_s`, `chunks`, `usage`, `outcome`).

Conventions: https://opentelemetry.io/docs/specs/semconv/gen-ai/ (v1.41, status
Development): spans `chat {model}` of kind CLIENT, `gen_ai.*` attributes, and the
metrics `gen_ai.client.token.usage`, `gen_ai.client.operation.duration`,
`gen_ai.server.time_to_first_token`, `gen_ai.server.time_per_output_token`, with the
bucket boundaries the conventions advise. Deliberate choices where they leave room:

- The two `gen_ai.server.*` metrics stand in for the client's per-chunk ones
  (`gen_ai.client.operation.time_to_first_chunk` / `time_per_output_chunk`): those take
  a measurement per chunk, on the hot path; these take one per generation, and the
  gateway does serve these tokens to its own callers. Both count successful answers only.
- `error.type` is the outcome whenever it is neither `done` nor `client_disconnect`:
  the stable error code (`rate_limited`, `timeout`, ...) or `not_started`. A caller that
  left cancelled the call; its span keeps status UNSET and says so in
  `gemini_sse.outcome`, so that error rates count failures, not people who moved on.
- The simulated model's `gen_ai.provider.name` is `gemini_sse.simulated`: no well-known
  value fits a model that is not one.
- A span's parent is the request's current span when something else made one (FastAPI's
  own telemetry, `opentelemetry-instrument`); otherwise the caller's trace context, read
  from the request's headers at admission with the configured propagators (W3C
  `traceparent` by default).
- Not recorded yet: finish reasons and cached or reasoning token counts, which the
  pipeline does not keep, and `server.address`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from .. import __version__
from .pipeline import Generation
from .providers import ModelRequest
from .settings import Settings

if TYPE_CHECKING:  # the SDK is the `otel` extra's, imported when asked for
    from opentelemetry.sdk.metrics import MeterProvider as SDKMeterProvider
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider

Attributes = dict[str, AttributeValue]

_SCOPE = "gemini_sse"
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"

# Bucket boundaries advised by the conventions, per metric.
_TOKEN_BUCKETS = tuple(4**n for n in range(14))  # 1, 4, 16, ... 67108864
_DURATION_BUCKETS = tuple(0.01 * 2**n for n in range(14))  # 0.01, 0.02, ... 81.92
_TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
_TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)


class _Shutdown(Protocol):
    def shutdown(self) -> object: ...


def provider_names(settings: Settings) -> dict[str, str]:
    """The conventions' `gen_ai.provider.name` of each of our providers, by our name."""
    return {
        "vertex": "gcp.vertex_ai",
        # Google's Gemini API with a key, Vertex AI with Application Default Credentials.
        "genai": "gcp.vertex_ai" if settings.genai_api_key is None else "gcp.gemini",
        "openai": "openai" if settings.openai_azure_endpoint is None else "azure.ai.openai",
        "fake": "gemini_sse.simulated",
    }


class Telemetry:
    """The gateway's tracer and instruments; one per app, built by `create_app`."""

    def __init__(
        self,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider,
        settings: Settings,
        *,
        owned: Sequence[_Shutdown] = (),
    ) -> None:
        self._tracer = tracer_provider.get_tracer(_SCOPE, __version__, schema_url=_SCHEMA_URL)
        meter = meter_provider.get_meter(_SCOPE, __version__, schema_url=_SCHEMA_URL)
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.time_to_first_token = meter.create_histogram(
            "gen_ai.server.time_to_first_token",
            unit="s",
            description="Time to generate first token for successful responses.",
            explicit_bucket_boundaries_advisory=_TTFT_BUCKETS,
        )
        self.time_per_output_token = meter.create_histogram(
            "gen_ai.server.time_per_output_token",
            unit="s",
            description="Time per output token generated after the first token "
            "for successful responses.",
            explicit_bucket_boundaries_advisory=_TPOT_BUCKETS,
        )
        self._provider_names = provider_names(settings)
        self._owned = owned

    @classmethod
    def from_settings(cls, settings: Settings) -> Telemetry | None:
        """What `GEMINI_SSE_OTEL` asks for: nothing, our own SDK pipeline, or the global one."""
        if settings.otel == "off":
            return None
        if settings.otel == "global":
            return cls(trace.get_tracer_provider(), metrics.get_meter_provider(), settings)
        tracer_provider, meter_provider = _sdk_providers(os.environ)
        return cls(
            tracer_provider, meter_provider, settings, owned=(tracer_provider, meter_provider)
        )

    def start(
        self,
        request: ModelRequest,
        *,
        provider: str,
        request_id: str | None,
        stream_id: str | None,
        headers: Mapping[str, str] | None,
    ) -> GenerationTrace:
        """Open the span of a generation being admitted (`provider`: our provider's name)."""
        name = self.provider_name(provider)
        attributes: Attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": name,
            "gen_ai.request.model": request.model,
        }
        if request.temperature is not None:
            attributes["gen_ai.request.temperature"] = request.temperature
        if request.top_p is not None:
            attributes["gen_ai.request.top_p"] = request.top_p
        if request.max_output_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = request.max_output_tokens
        if request.stop:
            attributes["gen_ai.request.stop_sequences"] = list(request.stop)
        if request_id is not None:
            attributes["gemini_sse.request_id"] = request_id
        if stream_id is not None:
            attributes["gemini_sse.stream_id"] = stream_id
        span = self._tracer.start_span(
            f"chat {request.model}",
            context=_parent(headers),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        return GenerationTrace(self, span, name)

    def provider_name(self, ours: str) -> str:
        """The conventions' name of one of our providers (`vertex`: `gcp.vertex_ai`)."""
        return self._provider_names.get(ours, ours)

    def shutdown(self) -> None:
        """Export what is pending and stop the providers we built (blocks: call off the loop)."""
        for provider in self._owned:
            provider.shutdown()


class GenerationTrace:
    """One generation's open span, ended once by `Gateway.finish`."""

    __slots__ = ("_telemetry", "_span", "_provider")

    def __init__(self, telemetry: Telemetry, span: trace.Span, provider: str) -> None:
        self._telemetry = telemetry
        self._span = span
        self._provider = provider

    def end(self, generation: Generation, *, outcome: str, duration_s: float) -> None:
        """Close the span and record the metrics of a generation that ended with `outcome`."""
        telemetry = self._telemetry
        ttft_s = generation.ttft_s
        usage = generation.usage
        # The model called last: the one asked for, or the fallback target moved to.
        provider, model = self._provider, generation.request.model
        target = next((f for f in generation.fallbacks if f.label == generation.fallback), None)
        if target is not None:
            provider, model = telemetry.provider_name(target.provider.name), target.model
        common: Attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": generation.request.model,
        }
        if ttft_s is not None:  # that model answered
            common["gen_ai.response.model"] = model
        # A caller who left cancelled the call; that is not the model or the gateway failing.
        failed = outcome not in ("done", "client_disconnect")

        span = self._span
        if span.is_recording():
            attributes: Attributes = {
                **common,
                "gemini_sse.outcome": outcome,
                "gemini_sse.chunks": generation.chunks,
            }
            if ttft_s is not None:
                attributes["gemini_sse.ttft_s"] = ttft_s
            if generation.fallback is not None:
                attributes["gemini_sse.fallback"] = generation.fallback
            if usage is not None:
                attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
                attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
                if usage.cached_tokens is not None:
                    attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
                if usage.reasoning_tokens is not None:
                    attributes["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
            if generation.finish_reason is not None:
                attributes["gen_ai.response.finish_reasons"] = (generation.finish_reason,)
            if failed:
                attributes["error.type"] = outcome
                span.set_status(Status(StatusCode.ERROR, outcome))
            span.set_attributes(attributes)
        span.end()

        telemetry.duration.record(
            duration_s, {**common, "error.type": outcome} if failed else common
        )
        if usage is not None:
            telemetry.token_usage.record(
                usage.input_tokens, {**common, "gen_ai.token.type": "input"}
            )
            telemetry.token_usage.record(
                usage.output_tokens, {**common, "gen_ai.token.type": "output"}
            )
        if not failed and ttft_s is not None:
            telemetry.time_to_first_token.record(ttft_s, common)
            # Per the conventions: the time after the first token, over the tokens after it.
            if usage is not None and usage.output_tokens > 1:
                per_token = max(duration_s - ttft_s, 0.0) / (usage.output_tokens - 1)
                telemetry.time_per_output_token.record(per_token, common)


def _parent(headers: Mapping[str, str] | None) -> Context | None:
    """The context a generation's span belongs to (None: the current one)."""
    if headers is None or trace.get_current_span().get_span_context().is_valid:
        return None
    return propagate.extract(headers, context=Context())


def _sdk_providers(environ: Mapping[str, str]) -> tuple[SDKTracerProvider, SDKMeterProvider]:
    """Providers of our own, exporting as the standard `OTEL_*` variables say.

    The SDK and the exporters read most of them themselves (endpoint, headers, sampler,
    resource, batch and export intervals); the exporter choice is read here.
    """
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider as SDKMeterProvider
        from opentelemetry.sdk.metrics.export import (
            ConsoleMetricExporter,
            MetricExporter,
            MetricReader,
            PeriodicExportingMetricReader,
        )
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )
    except ImportError as exc:
        raise RuntimeError(
            "GEMINI_SSE_OTEL=on needs the OpenTelemetry SDK: pip install 'gemini-sse[server,otel]'"
        ) from exc

    for signal in ("TRACES", "METRICS"):
        # The signal's own variable wins over the general one, as in the exporters.
        variable = f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"
        if variable not in environ:
            variable = "OTEL_EXPORTER_OTLP_PROTOCOL"
        protocol = environ.get(variable, "http/protobuf")
        if protocol != "http/protobuf":
            raise ValueError(f"{variable}={protocol!r}: the gateway exports http/protobuf only")
    # Our defaults, under whatever OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES say. Each
    # process (a worker, a replica) is an instance of its own: cumulative metrics of two
    # processes with one identity would read as one series that jumps back and forth.
    defaults = {
        "service.name": "gemini-sse",
        "service.version": __version__,
        "service.instance.id": str(uuid.uuid4()),
    }
    resource = Resource.create(defaults).merge(OTELResourceDetector().detect())

    tracer_provider = SDKTracerProvider(resource=resource, shutdown_on_exit=False)
    span_exporter: type[SpanExporter] | None = {
        "otlp": OTLPSpanExporter,
        "console": ConsoleSpanExporter,
        "none": None,
    }[_exporter(environ, "OTEL_TRACES_EXPORTER")]
    if span_exporter is not None:
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter()))

    readers: list[MetricReader] = []
    metric_exporter: type[MetricExporter] | None = {
        "otlp": OTLPMetricExporter,
        "console": ConsoleMetricExporter,
        "none": None,
    }[_exporter(environ, "OTEL_METRICS_EXPORTER")]
    if metric_exporter is not None:
        readers.append(PeriodicExportingMetricReader(metric_exporter()))
    meter_provider = SDKMeterProvider(
        metric_readers=readers, resource=resource, shutdown_on_exit=False
    )
    return tracer_provider, meter_provider


def _exporter(environ: Mapping[str, str], variable: str) -> str:
    value = environ.get(variable, "otlp").strip().lower() or "otlp"
    if value not in ("otlp", "console", "none"):
        raise ValueError(f"{variable}={value!r}: the gateway knows otlp, console and none")
    return value
