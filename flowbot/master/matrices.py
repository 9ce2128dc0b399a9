"""What a matrix's cells do to each other while they run: ``fail_fast``.

A cell that fails (FAILURE or EXCEPTION) of a builder whose :class:`~flowbot.matrix.Matrix` has
``fail_fast=True`` stops the other cells of the same matrix: those waiting are withdrawn (their
requests end CANCELLED, with no build) and those running are stopped (CANCELLED, saying which cell
failed). Cells that ended already keep their results.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from ..builder import Builder
from ..matrix import label
from ..records import BuildRequest
from ..results import Result

if TYPE_CHECKING:
    from .build import RunningBuild

log = logging.getLogger(__name__)

#: The results that end a fail-fast matrix.
FAILED = (Result.FAILURE, Result.EXCEPTION)


class Withdraws(Protocol):
    """Who holds the waiting requests and can withdraw one (the dispatcher)."""

    queue: Iterable[BuildRequest]

    def cancel(self, request: BuildRequest) -> object: ...


def fail_fast(
    builder: Builder | None,
    request: BuildRequest,
    result: Result,
    running: Iterable[RunningBuild],
    waiting: Withdraws,
) -> None:
    """Stop the rest of ``request``'s matrix when it ended as ``result`` and its matrix fails fast."""
    matrix = builder.matrix if builder is not None else None
    if request.matrix_id is None or matrix is None or not matrix.fail_fast or result not in FAILED:
        return
    reason = f"fail_fast: matrix cell {label(request.cell or {})} ended {result.name}"
    stopped = [b for b in running if b.request.matrix_id == request.matrix_id and b.request.id != request.id]
    for build in stopped:
        build.stop(reason)
    withdrawn = [r for r in waiting.queue if r.matrix_id == request.matrix_id]
    for pending in withdrawn:
        waiting.cancel(pending)
    if stopped or withdrawn:
        log.info(
            "matrix %d of %s: %s; %d cell(s) stopped, %d withdrawn",
            request.matrix_id,
            request.builder,
            reason,
            len(stopped),
            len(withdrawn),
        )
