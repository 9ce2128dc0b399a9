"""How reporters put a build in words: the one line that says what happened, and durations."""

from __future__ import annotations

from ..records import Build


def headline(build: Build) -> str:
    """``FAILURE: unit #12 on main (1a2b3c4)``: a build in one line (RUNNING while it runs); a
    matrix cell's says which (``FAILURE: test #7 (python=3.12, os=mac) on main (1a2b3c4)``)."""
    result = build.result.name if build.result is not None else "RUNNING"
    where = f" on {build.branch}" if build.branch else ""
    revision = f" ({build.revision[:10]})" if build.revision else ""
    return f"{result}: {build.builder} #{build.number}{build.cell_label}{where}{revision}"


def steps_said(build: Build) -> str:
    """What the build's steps said of themselves, ``test: 3 failed, 120 passed; docs: 2 warnings``
    ("" when none said anything, or the report has no steps)."""
    return "; ".join(f"{step.name}: {step.summary}" for step in build.steps if step.summary)


def took(value: float | None) -> str:
    """A duration as people say it: ``3.2 s``, ``4 min 10 s``, ``2 h 5 min`` ("" for None)."""
    if value is None:
        return ""
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def size(value: int) -> str:
    """A number of bytes as people say it: ``812 B``, ``4.2 KB``, ``1.3 GB`` (powers of 1000)."""
    if value < 1000:
        return f"{value} B"
    amount = float(value)
    for unit in ("KB", "MB", "GB"):
        amount /= 1000
        if amount < 1000:
            return f"{amount:.1f} {unit}"
    return f"{amount / 1000:.1f} TB"
