"""OpenTelemetry set-up: traces for HTTP, database and messaging, JSON logs with trace ids.

Spans are exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set. Nothing here
records request bodies, query strings or message payloads, so no child identity reaches ops.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

_provider: TracerProvider | None = None


def exporting() -> bool:
    """Whether traces and metrics go anywhere (an OTLP endpoint is configured)."""
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def setup_telemetry(*, service: str, org: str) -> TracerProvider:
    """Install the process-wide tracer (and, when exporting, meter) provider once per process.

    With nowhere to send them, recording spans and metrics is pure cost (a fifth of a request's
    CPU, measured): spans then stay unrecorded, yet trace ids are still made and propagated
    (X-Trace-Id, log lines, NATS headers), and metrics stay OpenTelemetry's no-op default.
    OTEL_TRACES_SAMPLER, when set, decides about spans instead.
    """
    global _provider
    if _provider is not None:
        return _provider
    resource = Resource.create({
        "service.name": f"tillsammans-{service}",
        "service.namespace": "tillsammans",
        "deployment.environment": os.environ.get("TILLSAMMANS_ENVIRONMENT", "development"),
        "tillsammans.org": org,
    })
    sampler = None if exporting() or os.environ.get("OTEL_TRACES_SAMPLER") else ALWAYS_OFF
    provider = TracerProvider(resource=resource, sampler=sampler)
    if exporting():
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        metrics.set_meter_provider(MeterProvider(
            resource=resource, metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())]))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def shutdown_telemetry() -> None:
    """Flush and stop exporters so the last spans are not lost at shutdown."""
    if _provider is not None:
        _provider.shutdown()
    meter_provider = metrics.get_meter_provider()
    if isinstance(meter_provider, MeterProvider):
        meter_provider.shutdown()


def ingress_refusals(meter_provider: metrics.MeterProvider | None = None) -> metrics.Counter:
    """The counter ``tillsammans.ingress.refused``: messages from another organisation a receiver refused.

    Its attributes are only ``event_type``, ``sender`` and a short ``reason`` code: never ids or values.
    Made from the global meter provider unless one is given; before (or without) an exporter that is
    OpenTelemetry's proxy, which costs nothing and starts counting once a real provider is installed.
    """
    meter = metrics.get_meter("tillsammans", meter_provider=meter_provider)
    return meter.create_counter("tillsammans.ingress.refused", unit="{message}",
                                description="Messages from another organisation refused and dead-lettered.")


def dead_letter_counters(
        meter_provider: metrics.MeterProvider | None = None) -> tuple[metrics.Counter, metrics.Counter]:
    """The counters ``tillsammans.messages.dead_lettered`` and ``tillsammans.messages.parked``.

    Their only attributes are ``consumer`` (the durable's name, ours) and a short ``reason`` code, as
    for ``ingress_refusals``: never ids, subjects or values.
    """
    meter = metrics.get_meter("tillsammans", meter_provider=meter_provider)
    return (meter.create_counter("tillsammans.messages.dead_lettered", unit="{message}",
                                 description="Messages written to the DEADLETTER stream, per consumer and reason."),
            meter.create_counter("tillsammans.messages.parked", unit="{message}",
                                 description="Messages parked until what they wait for arrives, per consumer and "
                                             "reason."))


@dataclass(frozen=True)
class DeliveryMetrics:
    """Counters of redeliveries and failed publishes, and the readiness gauge."""

    redelivered: metrics.Counter
    publish_failed: metrics.Counter
    ready: metrics._Gauge


def delivery_counters(meter_provider: metrics.MeterProvider | None = None) -> DeliveryMetrics:
    """``tillsammans.messages.redelivered``, ``tillsammans.outbox.publish_failed`` and ``tillsammans.ready``.

    A redelivery is counted per consumer and ``kind`` (infrastructure or merit); a failed publish per
    destination and error type; readiness is 1 or 0 per part checked, set at each ``/health/ready``.
    Attributes are our own names and fixed codes, never ids or values.
    """
    meter = metrics.get_meter("tillsammans", meter_provider=meter_provider)
    return DeliveryMetrics(
        redelivered=meter.create_counter("tillsammans.messages.redelivered", unit="{message}",
                                         description="Messages not applied yet and offered again, per consumer "
                                                     "and kind."),
        publish_failed=meter.create_counter("tillsammans.outbox.publish_failed", unit="{message}",
                                            description="Outbox publishes that failed, per destination and error "
                                                        "type."),
        ready=meter.create_gauge("tillsammans.ready", unit="1",
                                 description="1 when the part (database, broker, start_up) is ready, else 0."))


def outbox_backlog_gauges(backlog: Callable[[], Mapping[str, tuple[int, float]]],
                          meter_provider: metrics.MeterProvider | None = None) -> None:
    """The gauges ``tillsammans.outbox.backlog`` and ``tillsammans.outbox.oldest_age_seconds``, per destination.

    ``backlog`` answers, for each destination with unsent rows, how many there are and how old the
    oldest is in seconds; it is read at each collection, so it must be cheap and thread-safe. Their only
    attribute is ``destination`` (``inbox.<receiver>`` or a stream name): never ids or contents. Like
    ``ingress_refusals``, a no-op until (unless) a real meter provider is installed.
    """
    meter = metrics.get_meter("tillsammans", meter_provider=meter_provider)

    def rows(_options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(count, {"destination": destination}) for destination, (count, _) in backlog().items()]

    def age(_options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(oldest, {"destination": destination}) for destination, (_, oldest) in backlog().items()]

    meter.create_observable_gauge("tillsammans.outbox.backlog", callbacks=[rows], unit="{message}",
                                  description="Outbox rows waiting to be published (not withheld), per destination.")
    meter.create_observable_gauge("tillsammans.outbox.oldest_age_seconds", callbacks=[age], unit="s",
                                  description="Age of the oldest unpublished outbox row, per destination.")


def current_traceparent() -> str | None:
    """The W3C traceparent of the active span, to store with an outbox row."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


def context_of(traceparent: str | None) -> otel_context.Context | None:
    """The trace context a saved traceparent names (None: start a new trace)."""
    return extract({"traceparent": traceparent}) if traceparent else None


def current_trace_id() -> str | None:
    """The active trace id as 32 hex digits, or None outside a trace."""
    span_context = trace.get_current_span().get_span_context()
    return f"{span_context.trace_id:032x}" if span_context.is_valid else None


# color_message: uvicorn's ANSI-coloured copy of the message.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName",
                                                                         "color_message"}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line with the trace and span id of the active span."""

    def __init__(self, *, service: str, org: str) -> None:
        super().__init__()
        self.static = {"service": service, "org": org}

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as JSON."""
        span_context = trace.get_current_span().get_span_context()
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self.static,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
        if span_context.is_valid:
            entry["trace_id"] = f"{span_context.trace_id:032x}"
            entry["span_id"] = f"{span_context.span_id:016x}"
        if record.exc_info and record.exc_info[0] is not None:
            # The type and the frames only: exception messages can quote SQL parameters or input.
            entry["error_type"] = record.exc_info[0].__name__
            entry["stack"] = "".join(traceback.format_tb(record.exc_info[2]))
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(*, service: str, org: str, level: str = "INFO") -> None:
    """Route all logging to stdout as JSON lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLogFormatter(service=service, org=org))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
