"""``/metrics``: the master in Prometheus's text format, written by hand (it is a few lines).

Counters and histograms count from the master's start (Prometheus handles restarts); gauges are
read from the master when scraped. Nothing here touches the store: a scrape every few seconds costs
the master next to nothing, however long its history.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .api import ApiHandler
from .events import Event, EventKind

if TYPE_CHECKING:
    from .master import Master

#: Upper bounds (seconds) of the duration histograms' buckets: CI builds take seconds to hours.
BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)


class Histogram:
    """Cumulative bucket counts, sum and count, per label value."""

    def __init__(self) -> None:
        self.series: dict[str, list[float]] = {}  # label -> [bucket counts..., sum, count]

    def observe(self, label: str, value: float) -> None:
        series = self.series.setdefault(label, [0.0] * (len(BUCKETS) + 2))
        for i, bound in enumerate(BUCKETS):
            if value <= bound:
                series[i] += 1
        series[-2] += value
        series[-1] += 1

    def lines(self, name: str, label: str) -> Iterable[str]:
        for value, series in sorted(self.series.items()):
            for bound, count in zip(BUCKETS, series, strict=False):
                yield f'{name}_bucket{{{label}="{_escape(value)}",le="{bound:g}"}} {count:g}'
            yield f'{name}_bucket{{{label}="{_escape(value)}",le="+Inf"}} {series[-1]:g}'
            yield f'{name}_sum{{{label}="{_escape(value)}"}} {series[-2]:.6f}'
            yield f'{name}_count{{{label}="{_escape(value)}"}} {series[-1]:g}'


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
                f'flowbot_builds_total{{builder="{_escape(b)}",result="{r}"}} {n}'
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
            (f'flowbot_queue_length{{builder="{_escape(n)}"}} {master.queue.count(n)}' for n in names),
        )
        metric(
            "flowbot_builds_running",
            "gauge",
            "Builds running now, by builder.",
            (f'flowbot_builds_running{{builder="{_escape(n)}"}} {running[n]}' for n in names),
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
            "Messages from workers dropped (malformed, unsigned, unknown...), by reason.",
            (
                f'flowbot_worker_messages_dropped_total{{reason="{_escape(r)}"}} {n}'
                for r, n in sorted(master.registry.dropped.items())
            ),
        )
        reporting = master.reporting
        metric(
            "flowbot_reports_total",
            "counter",
            "Reports by reporter and outcome (delivered, failed after retries or refused, dropped as too many).",
            (
                f'flowbot_reports_total{{reporter="{_escape(name)}",outcome="{outcome}"}} {counts[name]}'
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


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsHandler(ApiHandler):
    def initialize(self, master: Master, metrics: Metrics) -> None:  # type: ignore[override]
        super().initialize(master)
        self.metrics = metrics

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.metrics.render())
