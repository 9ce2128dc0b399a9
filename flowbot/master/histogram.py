"""A Prometheus histogram: cumulative bucket counts, sum and count, per label value."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: Upper bounds (seconds) of the duration histograms' buckets: CI builds take seconds to hours.
BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)


class Histogram:
    """Cumulative bucket counts, sum and count, per label value."""

    def __init__(self, buckets: tuple[float, ...] = BUCKETS) -> None:
        self.buckets = buckets
        self.series: dict[str, list[float]] = {}  # label -> [bucket counts..., sum, count]

    def observe(self, label: str, value: float) -> None:
        series = self.series.setdefault(label, [0.0] * (len(self.buckets) + 2))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                series[i] += 1
        series[-2] += value
        series[-1] += 1

    def lines(self, name: str, label: str) -> Iterable[str]:
        for value, series in sorted(self.series.items()):
            for bound, count in zip(self.buckets, series, strict=False):
                yield f'{name}_bucket{{{label}="{escape(value)}",le="{bound:g}"}} {count:g}'
            yield f'{name}_bucket{{{label}="{escape(value)}",le="+Inf"}} {series[-1]:g}'
            yield f'{name}_sum{{{label}="{escape(value)}"}} {series[-2]:.6f}'
            yield f'{name}_count{{{label}="{escape(value)}"}} {series[-1]:g}'


def escape(value: Any) -> str:
    """``value`` as a Prometheus label value."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
