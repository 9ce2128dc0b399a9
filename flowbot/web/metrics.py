"""``/metrics``: the master for Prometheus, through ``prometheus_client``.

Counters and histograms count from the master's start (Prometheus handles restarts, and
``flowbot_start_time_seconds`` says when that was); gauges are read from the master when scraped.
Nothing here touches the store: a scrape every few seconds costs the master next to nothing,
however long its history. Each master has a registry of its own (several can share a process),
with the process's own metrics (CPU, memory, file descriptors, garbage collection) beside its
own; a scraper that asks for OpenMetrics gets it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

import prometheus_client
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from ..master.events import Event, EventKind
from ..master.latent import InstanceState
from .api import ApiHandler

if TYPE_CHECKING:
    from .services import WebServices

#: Upper bounds (seconds) of the build duration and queue histograms: CI builds take seconds to hours.
BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)

# Every series counts from the master's start, which flowbot_start_time_seconds gives once.
prometheus_client.disable_created_metrics()


class Metrics:
    """Counts builds as they start and finish; collects everything on demand."""

    def __init__(self, services: WebServices):
        self.reads = services.reads
        self.gauges = services.gauges
        self.workers = services.control.workers
        self.started_at = time.time()
        self.builds: Counter[tuple[str, str]] = Counter()
        self.durations = Histogram(
            "flowbot_build_duration_seconds",
            "How long finished builds ran, by builder.",
            ["builder"],
            buckets=BUCKETS,
            registry=None,
        )
        self.queue_waits = Histogram(
            "flowbot_build_queue_seconds",
            "How long requests waited in the queue before their build started, by builder.",
            ["builder"],
            buckets=BUCKETS,
            registry=None,
        )
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        prometheus_client.ProcessCollector(registry=self.registry)
        prometheus_client.PlatformCollector(registry=self.registry)
        prometheus_client.GCCollector(registry=self.registry)
        self._unsubscribe = services.events.subscribe(
            self._on_event, (EventKind.BUILD_STARTED, EventKind.BUILD_FINISHED)
        )

    def _on_event(self, event: Event) -> None:
        build = event["build"]
        if event["type"] == EventKind.BUILD_STARTED:
            self.queue_waits.labels(build["builder"]).observe(max(0.0, build["started_at"] - build["submitted_at"]))
        else:
            self.builds[build["builder"], build["result"]] += 1
            self.durations.labels(build["builder"]).observe(max(0.0, build["finished_at"] - build["started_at"]))

    def close(self) -> None:
        self._unsubscribe()

    def render(self) -> str:
        """Everything, in Prometheus's text format."""
        return prometheus_client.generate_latest(self.registry).decode()

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """What a scraper that sent ``Accept: accept`` reads (text, or OpenMetrics), and its content type."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type

    def collect(self) -> Iterator[Metric]:
        """Everything the master knows of itself now (``prometheus_client``'s collector interface)."""
        builds = CounterMetricFamily(
            "flowbot_builds",
            "Builds finished since the master started, by builder and result.",
            labels=["builder", "result"],
        )
        for (builder, result), n in sorted(self.builds.items()):
            builds.add_metric([builder, result], n)
        yield builds
        yield from self.durations.collect()
        yield from self.queue_waits.collect()
        load = self.reads.status.load()
        yield _by_label(
            "flowbot_queue_length",
            "Build requests waiting for a worker, by builder.",
            "builder",
            {name: pending for name, (pending, _) in load.items()},
        )
        yield _by_label(
            "flowbot_builds_running",
            "Builds running now, by builder.",
            "builder",
            {name: running for name, (_, running) in load.items()},
        )
        yield GaugeMetricFamily("flowbot_workers_connected", "Workers connected now.", len(self.gauges.connections))
        yield GaugeMetricFamily(
            "flowbot_workers_paused", "Workers paused now (they take no new builds).", len(self.workers.paused)
        )
        yield GaugeMetricFamily(
            "flowbot_workers_configured", "Workers the pipeline declares.", len(self.reads.pipeline().workers)
        )
        dropped = CounterMetricFamily(
            "flowbot_worker_messages_dropped",
            "Messages from workers dropped (malformed, unsigned, replayed, unknown...) and connections cut off for a "
            "frame too large (cut-off), by reason.",
            labels=["reason"],
        )
        for reason, n in sorted(self.gauges.dropped.items()):
            dropped.add_metric([reason], n)
        yield dropped
        yield GaugeMetricFamily(
            "flowbot_store_available",
            "1 while the database takes writes, 0 while it cannot (down, restarting, its disk full).",
            int(self.reads.store.available),
        )
        yield GaugeMetricFamily(
            "flowbot_store_held_writes",
            "Writes waiting for the database to take writes again (builds' records, log lines).",
            self.reads.store.held_writes,
        )
        yield from self._instances()
        yield from self._reports()
        yield from self.gauges.loop_lag.histogram.collect()
        yield GaugeMetricFamily(
            "flowbot_loop_lag_seconds_max",
            "The longest the master's event loop ran late since the master started.",
            self.gauges.loop_lag.max,
        )
        yield GaugeMetricFamily(
            "flowbot_start_time_seconds", "When the master started (epoch seconds).", self.started_at
        )

    def _instances(self) -> Iterator[Metric]:
        """Workers started on demand: their instances by state, starts, failures, and time to connect."""
        latent = self.reads.instances
        states = Counter((v.worker, v.state.value) for v in latent.views())
        names = [w.name for w in self.reads.pipeline().workers if w.launcher is not None]
        instances = GaugeMetricFamily(
            "flowbot_instances",
            "Instances of workers started on demand, by worker and state (starting, connected, stopping).",
            labels=["worker", "state"],
        )
        for name in names:
            for state in InstanceState:
                instances.add_metric([name, state.value], states[name, state.value])
        yield instances
        for name, text, counts in (
            ("starts", "Instances a launcher was asked to start, by worker.", latent.starts),
            (
                "failures",
                "Instance starts that failed (launcher error, exit, start_timeout), by worker.",
                latent.failures,
            ),
        ):
            family = CounterMetricFamily(f"flowbot_instance_{name}", text, labels=["worker"])
            for worker in names:
                family.add_metric([worker], counts[worker])
            yield family
        yield from latent.connect_seconds.collect()

    def _reports(self) -> Iterator[Metric]:
        reporting = self.gauges.reporting
        family = CounterMetricFamily(
            "flowbot_reports",
            "Reports by reporter and outcome (delivered, failed after retries or refused, dropped as too many).",
            labels=["reporter", "outcome"],
        )
        for name in sorted({r.name for r in reporting.reporters}):
            for outcome, counts in (
                ("delivered", reporting.delivered),
                ("failed", reporting.failed),
                ("dropped", reporting.dropped),
            ):
                family.add_metric([name, outcome], counts[name])
        yield family


def _by_label(name: str, text: str, label: str, values: dict[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, text, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


class MetricsHandler(ApiHandler):
    def initialize(self, services: WebServices, metrics: Metrics) -> None:  # type: ignore[override]
        super().initialize(services)
        self.metrics = metrics

    def get(self) -> None:
        body, content_type = self.metrics.exposition(self.request.headers.get("Accept", ""))
        self.set_header("Content-Type", content_type)
        self.finish(body)
