"""``/metrics``: the master in Prometheus's text format, written by hand (it is a few lines).

Counters and histograms count from the master's start (Prometheus handles restarts); gauges are
read from the master when scraped. Nothing here touches the store: a scrape every few seconds costs
the master next to nothing, however long its history.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .api import ApiHandler
from .events import Event, EventKind
from .histogram import Histogram, escape
from .latent import InstanceState

if TYPE_CHECKING:
    from .master import Master


class Metrics:
    """Counts builds as they start and finish; renders everything on demand."""

    def __init__(self, master: Master):
        self.master = master
        self.started_at = time.time()
        self.builds: Counter[tuple[str, str]] = Counter()
        self.durations = Histogram()
        self.queue_waits = Histogram()
        self._unsubscribe = master.events.subscribe(self._on_event, (EventKind.BUILD_STARTED, EventKind.BUILD_FINISHED))

    def _on_event(self, event: Event) -> None:
        build = event["build"]
        if event["type"] == EventKind.BUILD_STARTED:
            self.queue_waits.observe(build["builder"], max(0.0, build["started_at"] - build["submitted_at"]))
        else:
            self.builds[build["builder"], build["result"]] += 1
            self.durations.observe(build["builder"], max(0.0, build["finished_at"] - build["started_at"]))

    def close(self) -> None:
        self._unsubscribe()

    def render(self) -> str:
        master = self.master
        out: list[str] = []

        def metric(name: str, kind: str, text: str, samples: Iterable[str]) -> None:
            out.append(f"# HELP {name} {text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(samples)

        metric(
            "flowbot_builds_total",
            "counter",
            "Builds finished since the master started, by builder and result.",
            (
                f'flowbot_builds_total{{builder="{escape(b)}",result="{r}"}} {n}'
                for (b, r), n in sorted(self.builds.items())
            ),
        )
        metric(
            "flowbot_build_duration_seconds",
            "histogram",
            "How long finished builds ran, by builder.",
            self.durations.lines("flowbot_build_duration_seconds", "builder"),
        )
        metric(
            "flowbot_build_queue_seconds",
            "histogram",
            "How long requests waited in the queue before their build started, by builder.",
            self.queue_waits.lines("flowbot_build_queue_seconds", "builder"),
        )
        running = Counter(b.builder for b in master.running.values())
        names = [b.name for b in master.pipeline.builders]
        metric(
            "flowbot_queue_length",
            "gauge",
            "Build requests waiting for a worker, by builder.",
            (f'flowbot_queue_length{{builder="{escape(n)}"}} {master.queue.count(n)}' for n in names),
        )
        metric(
            "flowbot_builds_running",
            "gauge",
            "Builds running now, by builder.",
            (f'flowbot_builds_running{{builder="{escape(n)}"}} {running[n]}' for n in names),
        )
        metric(
            "flowbot_workers_connected",
            "gauge",
            "Workers connected now.",
            [f"flowbot_workers_connected {len(master.registry.connections)}"],
        )
        metric(
            "flowbot_workers_paused",
            "gauge",
            "Workers paused now (they take no new builds).",
            [f"flowbot_workers_paused {len(master.worker_control.paused)}"],
        )
        metric(
            "flowbot_workers_configured",
            "gauge",
            "Workers the pipeline declares.",
            [f"flowbot_workers_configured {len(master.pipeline.workers)}"],
        )
        metric(
            "flowbot_worker_messages_dropped_total",
            "counter",
            "Messages from workers dropped (malformed, unsigned, replayed, unknown...) and connections cut off for a "
            "frame too large (cut-off), by reason.",
            (
                f'flowbot_worker_messages_dropped_total{{reason="{escape(r)}"}} {n}'
                for r, n in sorted(master.registry.dropped.items())
            ),
        )
        metric(
            "flowbot_store_available",
            "gauge",
            "1 while the database takes writes, 0 while it cannot (down, restarting, its disk full).",
            [f"flowbot_store_available {int(master.store.available)}"],
        )
        metric(
            "flowbot_store_held_writes",
            "gauge",
            "Writes waiting for the database to take writes again (builds' records, log lines).",
            [f"flowbot_store_held_writes {master.store.held_writes}"],
        )
        self._instances(metric)
        reporting = master.reporting
        metric(
            "flowbot_reports_total",
            "counter",
            "Reports by reporter and outcome (delivered, failed after retries or refused, dropped as too many).",
            (
                f'flowbot_reports_total{{reporter="{escape(name)}",outcome="{outcome}"}} {counts[name]}'
                for name in sorted({r.name for r in reporting.reporters})
                for outcome, counts in (
                    ("delivered", reporting.delivered),
                    ("failed", reporting.failed),
                    ("dropped", reporting.dropped),
                )
            ),
        )
        metric(
            "flowbot_start_time_seconds",
            "gauge",
            "When the master started (epoch seconds).",
            [f"flowbot_start_time_seconds {self.started_at:.3f}"],
        )
        return "\n".join(out) + "\n"

    def _instances(self, metric: Callable[[str, str, str, Iterable[str]], None]) -> None:
        """Workers started on demand: their instances by state, starts, failures, and time to connect."""
        latent = self.master.latent
        states = Counter((v.worker, v.state.value) for v in latent.views())
        names = [w.name for w in self.master.pipeline.workers if w.launcher is not None]
        metric(
            "flowbot_instances",
            "gauge",
            "Instances of workers started on demand, by worker and state (starting, connected, stopping).",
            (
                f'flowbot_instances{{worker="{escape(n)}",state="{state.value}"}} {states[n, state.value]}'
                for n in names
                for state in InstanceState
            ),
        )
        for name, text, counts in (
            ("starts", "Instances a launcher was asked to start, by worker.", latent.starts),
            (
                "failures",
                "Instance starts that failed (launcher error, exit, start_timeout), by worker.",
                latent.failures,
            ),
        ):
            metric(
                f"flowbot_instance_{name}_total",
                "counter",
                text,
                (f'flowbot_instance_{name}_total{{worker="{escape(n)}"}} {counts[n]}' for n in names),
            )
        metric(
            "flowbot_instance_connect_seconds",
            "histogram",
            "Seconds from an instance's start to its worker's connection, by worker.",
            latent.connect_seconds.lines("flowbot_instance_connect_seconds", "worker"),
        )


class MetricsHandler(ApiHandler):
    def initialize(self, master: Master, metrics: Metrics) -> None:  # type: ignore[override]
        super().initialize(master)
        self.metrics = metrics

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.metrics.render())
