"""What every service's composition root shares: engine, migrations, broker, relay, telemetry,
auth, problem handlers and health checks."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from faststream.nats import NatsBroker
from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from faststream.security import SASLPlaintext
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import APIError, BadRequestError, NotFoundError
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from sqlalchemy import Engine, text

from tillsammans_common import wheel
from tillsammans_common.admin import AdminContext
from tillsammans_common.admin import router as admin_router
from tillsammans_common.audit import name_service
from tillsammans_common.audit_api import router as audit_router
from tillsammans_common.auth import TokenVerifier
from tillsammans_common.db import make_engine, migrate_in_child, run_db
from tillsammans_common.errors import Failure, classify_failure
from tillsammans_common.messaging.consumer import (
    UNLIMITED_DELIVERIES,
    durable_consumers,
    stream_configs,
    watch_max_deliveries,
)
from tillsammans_common.messaging.deadletters import dead_letter_stream_configs
from tillsammans_common.messaging.parking import Parking
from tillsammans_common.messaging.relay import OutboxRelay
from tillsammans_common.retention import Pruner, Retention
from tillsammans_common.settings import ServiceSettings, StreamLimits
from tillsammans_common.telemetry import (
    delivery_counters,
    exporting,
    setup_logging,
    setup_telemetry,
    shutdown_telemetry,
)
from tillsammans_common.web import PROBLEM_RESPONSES, BodyLimit, TraceIdHeader, install_problem_handlers

log = logging.getLogger(__name__)


@dataclass
class Infrastructure:
    """The parts a service's routes and handlers are built on."""

    settings: ServiceSettings
    engine: Engine
    broker: NatsBroker
    relay: OutboxRelay
    pruner: Pruner
    pending_start_up: list[Callable[[], None]] = field(default_factory=list)
    """Start-up writes (migrations, seeding) the database could not take yet; retried until it can."""

    def start_up(self, work: Callable[[], None]) -> None:
        """Do a start-up write now or, when the database cannot take it yet, later (in order).

        A service whose database is read-only or missing at start-up then starts, says it is not
        ready, and finishes starting up once it can write, instead of crashing in a loop.
        """
        if self.pending_start_up:
            self.pending_start_up.append(work)
            return
        try:
            work()
        except Exception as exc:
            if not isinstance(exc, MigrationFailed) and classify_failure(exc) is not Failure.INFRASTRUCTURE:
                raise
            log.error("start-up write failed; starting not ready and retrying",
                      extra={"error_type": type(exc).__name__})
            self.pending_start_up.append(work)

    async def finish_start_up(self) -> None:
        """Retry the pending start-up writes with capped backoff until all are done."""
        delay = self.settings.infrastructure_retry_initial_seconds
        while self.pending_start_up:
            try:
                await asyncio.to_thread(self.pending_start_up[0])
            except Exception as exc:
                log.warning("start-up write still failing", extra={"error_type": type(exc).__name__})
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.infrastructure_retry_max_seconds)
                continue
            self.pending_start_up.pop(0)
        log.info("start-up writes done; the service can work")


class MigrationFailed(RuntimeError):
    """The database migration did not complete (the child process says why in the log)."""


def _migrate(database_url: str, versions_dir: Path, *, service: str, org: str) -> None:
    try:
        migrate_in_child(database_url, versions_dir, service=service, org=org)
    except RuntimeError as exc:
        raise MigrationFailed(str(exc)) from None


def build_infrastructure(settings: ServiceSettings, *, versions_dir: Path) -> Infrastructure:
    """Create the engine (migrated), the broker with telemetry, and the outbox relay."""
    setup_logging(service=settings.service_name, org=settings.org, level=settings.log_level)
    # Before anything listens: a bad wheel file must stop the service, not fail the first mapping.
    wheel.configure(settings.wheels_dir)
    provider = setup_telemetry(service=settings.service_name, org=settings.org)
    engine = make_engine(settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous)
    if exporting():  # statement spans are the costliest kind; without an exporter nobody sees them
        SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=provider)
    broker = NatsBroker(
        settings.nats_url,
        security=SASLPlaintext(username=settings.nats_user, password=settings.nats_password.get_secret_value())
        if settings.nats_user and settings.nats_password else None,
        name=f"tillsammans-{settings.org}-{settings.service_name}",
        middlewares=[NatsTelemetryMiddleware(tracer_provider=provider)],
        max_reconnect_attempts=-1,
        # Our logger, so the broker's lines are JSON with trace ids like every other line (its own
        # default logger prints coloured text).
        logger=logging.getLogger("tillsammans.broker"),
        # Per-message lines ("Received", "Processed") at DEBUG: at INFO they cost more than the handling.
        log_level=logging.DEBUG,
    )
    relay = OutboxRelay(engine, broker, org=settings.org, sweep_seconds=settings.relay_sweep_seconds,
                        backoff_initial_seconds=settings.relay_backoff_initial_seconds,
                        backoff_max_seconds=settings.relay_backoff_max_seconds)
    pruner = Pruner(engine, Retention.of(settings), interval_seconds=settings.prune_interval_seconds,
                    batch=settings.prune_batch_size)
    infra = Infrastructure(settings=settings, engine=engine, broker=broker, relay=relay, pruner=pruner)
    if settings.auto_migrate:
        infra.start_up(partial(_migrate, settings.resolved_database_url, versions_dir,
                               service=settings.service_name, org=settings.org))
    return infra


async def ensure_streams(broker: NatsBroker, org: str, *, inbox_max_age_seconds: float | None = None,
                         limits: StreamLimits = StreamLimits()) -> None:
    """Create this organisation's event and inbox streams, or bring existing ones to this configuration."""
    js = broker.config.connection_state.stream
    for config in stream_configs(org, inbox_max_age_seconds=inbox_max_age_seconds, limits=limits):
        try:
            await js.add_stream(config=config)  # accepted as is when the stream exists with this configuration
        except BadRequestError:
            try:
                # nats-server 2.10+ changes retention between limits and interest in place, and then
                # drops at once what every consumer has acknowledged.
                await js.update_stream(config=config)
            except APIError:
                await _replace_if_unused(js, config)


async def ensure_consumers(broker: NatsBroker) -> None:
    """Bring durable consumers that already exist on the broker to today's configuration.

    FastStream (nats-py) binds to an existing durable as it is, so one created by an older version
    would keep giving up after its old ``max_deliver``: the consumer, not the broker, decides when a
    message is poison now. ``max_deliver`` is mutable, so the durable is updated in place (its
    pending messages and acknowledgement state are kept).
    """
    js = broker.config.connection_state.stream
    for stream, durable in durable_consumers(broker):
        try:
            info = await js.consumer_info(stream, durable)
        except NotFoundError:
            continue  # created with today's configuration when the subscriber starts
        if info.config.max_deliver in (None, UNLIMITED_DELIVERIES):
            continue
        info.config.max_deliver = UNLIMITED_DELIVERIES
        await js.add_consumer(stream, config=info.config)  # the same name: an update of a mutable field
        log.info("durable consumer updated to unlimited deliveries", extra={"stream": stream, "consumer": durable})


async def ensure_dead_letter_streams(broker: NatsBroker, settings: ServiceSettings) -> None:
    """Create the organisation's DEADLETTER and PARKED streams, or bring existing ones to this configuration."""
    js = broker.config.connection_state.stream
    configs = dead_letter_stream_configs(settings.org, dead_letter_max_age_seconds=settings.dead_letter_max_age_seconds,
                                         dead_letter_max_bytes=settings.dead_letter_max_bytes,
                                         parked_max_age_seconds=settings.inbox_max_age_seconds)
    for config in configs:
        try:
            await js.add_stream(config=config)
        except BadRequestError:
            try:
                await js.update_stream(config=config)
            except APIError:
                await _replace_if_unused(js, config)


async def _replace_if_unused(js: JetStreamContext, config: StreamConfig) -> None:
    # A change JetStream refuses in place (e.g. of storage, or retention on an older server) needs a
    # new stream; deleting one that holds messages or consumers would lose them, so that one stays.
    info = await js.stream_info(config.name or "")
    if info.state.messages == 0 and info.state.consumer_count == 0:
        await js.delete_stream(config.name or "")
        await js.add_stream(config=config)
        log.info("stream recreated with its new configuration", extra={"stream": config.name})
    else:
        log.warning("stream kept with its old configuration: the broker refused the change and the stream is in use",
                    extra={"stream": config.name})


def build_app(infra: Infrastructure, *, title: str, description: str, routers: list[APIRouter]) -> FastAPI:
    """The FastAPI app: lifespan starts the broker and relay; problem+json; health; tracing."""
    settings = infra.settings

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await infra.broker.connect()
        await ensure_streams(infra.broker, settings.org, limits=settings.stream_limits)
        await ensure_consumers(infra.broker)
        await ensure_dead_letter_streams(infra.broker, settings)
        await infra.broker.start()
        await infra.relay.start()
        await parking.start()
        advisories = await watch_max_deliveries(infra.broker, settings)
        await infra.pruner.start()
        finishing = asyncio.create_task(infra.finish_start_up(), name="start-up") if infra.pending_start_up else None
        # Everything built so far (routes, models, compiled schemas) lives as long as the process:
        # moved out of the collector's view, later full collections stay short (no latency spikes).
        gc.collect()
        gc.freeze()
        log.info("service started")
        try:
            yield
        finally:
            if finishing is not None:
                finishing.cancel()
            await infra.pruner.stop()
            await advisories.unsubscribe()
            await parking.stop()
            await infra.relay.stop()
            await infra.broker.stop()
            shutdown_telemetry()
            infra.engine.dispose()

    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=lifespan,
                  responses=PROBLEM_RESPONSES)
    app.state.settings = settings
    app.state.infra = infra
    app.state.admin = AdminContext(settings=settings, engine=infra.engine, broker=infra.broker)
    parking = Parking(infra.broker, org=settings.org, service=settings.service_name,
                      timeout_seconds=settings.parking_timeout_seconds, sweep_seconds=settings.parking_sweep_seconds)
    app.state.token_verifier = TokenVerifier.for_settings(settings)
    install_problem_handlers(app)

    app.add_middleware(TraceIdHeader)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.include_router(_health_router())
    app.include_router(admin_router)
    app.include_router(audit_router)
    name_service(infra.engine, settings.service_name)  # so a route's audit() records which service wrote it
    for router in routers:
        app.include_router(router)
    # One server span per request: the ASGI send/receive sub-spans say nothing ops can act on.
    FastAPIInstrumentor.instrument_app(app, excluded_urls="health", exclude_spans=["receive", "send"])
    return app


def _health_router() -> APIRouter:
    router = APIRouter(prefix="/health", tags=["health"])

    @router.get("/live", summary="The process is up")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready", summary="The database can be written and the broker is reachable",
                responses={503: {"description": "Not ready now: the body names the part that failed"}})
    async def ready(request: Request) -> JSONResponse:
        infra: Infrastructure = request.app.state.infra
        checks = {"database": "ok", "broker": "ok", "start_up": "ok"}
        if infra.pending_start_up:
            checks["start_up"] = "waiting to write the database (migrations or seeding)"
        try:
            await run_db(infra.engine, partial(probe_write, infra.engine))
        except Exception as exc:
            checks["database"] = "not writable" if classify_failure(exc) is Failure.INFRASTRUCTURE else "failing"
            log.warning("readiness: database cannot be written", extra={"error_type": type(exc).__name__})
        try:
            connected = infra.broker.connection.is_connected
        except Exception:
            connected = False
        if not connected:
            checks["broker"] = "unavailable"
        healthy = all(value == "ok" for value in checks.values())
        for part, state in checks.items():
            READY.set(1 if state == "ok" else 0, {"part": part})
        retry_after = {"Retry-After": str(infra.settings.unavailable_retry_after_seconds)}
        return JSONResponse({"status": "ok" if healthy else "unavailable", **checks,
                             "org": infra.settings.org, "service": infra.settings.service_name},
                            status_code=200 if healthy else 503, headers=None if healthy else retry_after)

    return router


READINESS_PROBE_TABLE = "tillsammans_readiness_probe"
READY = delivery_counters().ready


def probe_write(engine: Engine) -> None:
    """Write to the database in a transaction that is rolled back: raises if it cannot be written now.

    Creating a table takes the write lock and changes the schema, so a locked, read-only or
    unopenable database (and a PostgreSQL standby) fails here. Nothing is committed, so a full disk,
    which SQLite notices only at commit, shows instead in the 503s and retries of the real work.
    """
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            if engine.dialect.name == "sqlite":
                # pysqlite runs DDL outside a transaction unless one was begun explicitly.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            connection.execute(text(f"CREATE TABLE {READINESS_PROBE_TABLE} (probe INTEGER)"))
        finally:
            transaction.rollback()


def serve(create_app: Callable[[], FastAPI], settings: ServiceSettings) -> None:
    """Run a service under uvicorn with the settings' host and port."""
    uvicorn.run(create_app(), host=settings.host, port=settings.port, log_config=None, access_log=False,
                loop="uvloop", http="httptools", timeout_graceful_shutdown=5)
