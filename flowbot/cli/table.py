"""Plain-text tables and the small formatting helpers the CLI's views share."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..records import Build


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces; ``None`` shows as ``-``."""
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def duration(build: Build) -> str | None:
    """A build's duration, or how long it has been running."""
    if not build.started_at:
        return None
    end = build.finished_at or time.time()
    seconds = end - build.started_at
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def result(build: Build) -> str:
    """A build's result by name, or ``running``."""
    return build.result.name if build.result is not None else "running"


def ago(when: float | None) -> str | None:
    if not when:
        return None
    seconds = max(time.time() - when, 0)
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(when))


def plural(count: int, noun: str) -> str:
    """``1 builder``, ``2 builders``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def short(revision: str | None) -> str | None:
    return revision[:12] if revision else revision


def builds_table(builds: Sequence[Build], *, ids: bool = False) -> str:
    """Builds as rows; ``ids`` adds the id column that commands naming a build take."""
    headers = ["BUILDER", "#", "BRANCH", "REVISION", "RESULT", "DURATION", "WORKER"]
    rows = [[b.builder, b.number, b.branch, short(b.revision), result(b), duration(b), b.worker] for b in builds]
    if ids:
        headers, rows = ["ID", *headers], [[b.id, *row] for b, row in zip(builds, rows, strict=True)]
    return table(headers, rows)
