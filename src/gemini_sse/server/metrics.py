"""Prometheus metrics of one gateway, served at `GET /metrics`.

Each app has its own `CollectorRegistry`, never prometheus-client's global one, so two
gateways in one process (as in tests) count apart. Labels are the model and the provider,
never a caller's key or anything from a prompt: both label values come from the operator's
allow-list, so the number of series stays bounded.

Gaps between chunks are the one measurement made per token. A stream tallies them into
the histogram's buckets in plain Python (`ChunkGaps.tick`, from the clock reading its
generation makes anyway, and a bisect) and
adds the tally to the shared histogram when it ends: about a third of the cost of
`Histogram.observe`, which takes a lock per call. The histogram therefore shows finished
streams only.
"""

from __future__ import annotations

import operator
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import HistogramMetricFamily, Metric

from .._models import UPSTREAM_CODES

# Why a request was refused before any model call (`gemini_sse_requests_rejected_total`).
REJECTION_REASONS = ("auth", "rate_limit", "overload", "validation", "too_large")

# Codes of `error` events that the model's side caused (`gemini_sse_upstream_errors_total`).

TTFT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)
GAP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

_LABELS = ("model", "provider")


class ChunkGaps:
    """One stream's gaps between chunks, tallied into `GAP_BUCKETS` as they happen."""

    __slots__ = ("counts", "_first", "_last")

    def __init__(self) -> None:
        self.counts = [0] * (len(GAP_BUCKETS) + 1)  # the last one is +Inf
        self._first: float | None = None
        self._last: float | None = None

    def tick(self, now: float) -> None:
        """A chunk came at `now` (the event loop's clock, in seconds)."""
        last, self._last = self._last, now
        if last is not None:
            # bisect_left: a gap equal to a bound belongs to that bucket (`le`).
            self.counts[bisect_left(GAP_BUCKETS, now - last)] += 1
        else:
            self._first = now

    @property
    def sum(self) -> float:
        """The gaps' total: the time from the first chunk to the last."""
        if self._first is None or self._last is None:
            return 0.0
        return self._last - self._first


class _GapHistogram:
    """A histogram fed whole tallies at a time; a collector for the registry.

    Only the event loop's thread touches it (streams end there, `/metrics` renders
    there), so it needs no lock.
    """

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self._series: dict[tuple[str, str], tuple[list[int], list[float]]] = {}

    def add(self, labels: tuple[str, str], gaps: ChunkGaps) -> None:
        counts, total = self._series.setdefault(labels, ([0] * len(gaps.counts), [0.0]))
        counts[:] = map(operator.add, counts, gaps.counts)  # in C: once per stream
        total[0] += gaps.sum

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=_LABELS)

    def describe(self) -> Sequence[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        bounds = [*(repr(float(b)) for b in GAP_BUCKETS), "+Inf"]
        for labels, (counts, total) in self._series.items():
            cumulative, buckets = 0, []
            for bound, count in zip(bounds, counts, strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            family.add_metric(list(labels), buckets, total[0])
        yield family


class _Series(NamedTuple):
    """The per-stream instruments of one model and provider, already labelled."""

    in_flight: Gauge
    ttft: Histogram
    duration: Histogram
    chunks: Counter
    output_tokens: Counter


class Metrics:
    """The gateway's instruments, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.in_flight = Gauge(
            "gemini_sse_streams_in_flight",
            "Generations running now.",
            _LABELS,
            registry=registry,
        )
        self.finished = Counter(
            "gemini_sse_streams_finished",
            "Generations ended, by outcome: done, an error code, or client_disconnect.",
            (*_LABELS, "outcome"),
            registry=registry,
        )
        self.ttft = Histogram(
            "gemini_sse_time_to_first_token_seconds",
            "From the start of a generation to its first text.",
            _LABELS,
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.gaps = _GapHistogram(
            "gemini_sse_chunk_gap_seconds",
            "Between consecutive chunks of text sent to a client (recorded as streams end).",
        )
        registry.register(self.gaps)
        self.duration = Histogram(
            "gemini_sse_stream_duration_seconds",
            "From the start of a generation to its end.",
            _LABELS,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.chunks = Counter(
            "gemini_sse_chunks",
            "Chunks of text sent (one `token` event each).",
            _LABELS,
            registry=registry,
        )
        self.output_tokens = Counter(
            "gemini_sse_output_tokens",
            "Output tokens the model reported, counted as streams end.",
            _LABELS,
            registry=registry,
        )
        self.upstream_errors = Counter(
            "gemini_sse_upstream_errors",
            "Generations ended by the model's side, by error code.",
            (*_LABELS, "code"),
            registry=registry,
        )
        self.fallbacks = Counter(
            "gemini_sse_fallbacks",
            "Moves to a fallback target before the first token, by target and error code.",
            (*_LABELS, "target", "reason"),
            registry=registry,
        )
        self.rejected = Counter(
            "gemini_sse_requests_rejected",
            "Requests refused before any model call, by reason.",
            ("reason",),
            registry=registry,
        )
        for reason in REJECTION_REASONS:
            self.rejected.labels(reason)
        self._by_labels: dict[tuple[str, str], _Series] = {}
        self._finished: dict[tuple[str, str, str], Any] = {}  # `finished`, labelled

    def _series(self, labels: tuple[str, str]) -> _Series:
        """The instruments of one model and provider, labelled once: `labels()` takes a
        lock and builds its key on every call, and a stream made seven such calls."""
        series = self._by_labels.get(labels)
        if series is None:
            series = self._by_labels[labels] = _Series(
                self.in_flight.labels(*labels),
                self.ttft.labels(*labels),
                self.duration.labels(*labels),
                self.chunks.labels(*labels),
                self.output_tokens.labels(*labels),
            )
        return series

    def stream_started(self, model: str, provider: str) -> None:
        self._series((model, provider)).in_flight.inc()

    def stream_finished(
        self,
        model: str,
        provider: str,
        *,
        outcome: str,
        ttft_s: float | None,
        duration_s: float,
        chunks: int,
        output_tokens: int,
        gaps: ChunkGaps,
    ) -> None:
        labels = (model, provider)
        series = self._series(labels)
        series.in_flight.dec()
        finished = self._finished.get((*labels, outcome))
        if finished is None:
            finished = self._finished[(*labels, outcome)] = self.finished.labels(*labels, outcome)
        finished.inc()
        if outcome in UPSTREAM_CODES:
            self.upstream_errors.labels(*labels, outcome).inc()
        if ttft_s is not None:
            series.ttft.observe(ttft_s)
        series.duration.observe(duration_s)
        if chunks:
            series.chunks.inc(chunks)
            self.gaps.add(labels, gaps)
        if output_tokens:
            series.output_tokens.inc(output_tokens)

    def fell_back(self, model: str, provider: str, *, target: str, reason: str) -> None:
        """Count one move of a generation to a fallback target (`GEMINI_SSE_FALLBACK`)."""
        self.fallbacks.labels(model, provider, target, reason).inc()

    def reject(self, reason: str) -> None:
        """Count one request refused before any model call (`REJECTION_REASONS`)."""
        self.rejected.labels(reason).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
