"""The matrix columns of :meth:`History.builds <flowbot.analysis.History.builds>`.

When the builds read include matrix cells, the frame gets ``matrix_id`` (the matrix a build is a
cell of) and a column per axis with the cell's value there (``python``, ``os``...); other builds
have them missing. An axis named as a column the frame has already (``result``, say) is
``matrix_<axis>`` instead. A frame of no matrix builds has neither.
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from ..store import schema as t

_r = t.buildrequests.c


def add_cell_columns(conn: sa.Connection, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (of builds, with their ``request_id``) with ``matrix_id`` and one column per axis."""
    if frame.empty:
        return frame
    low, high = int(frame["request_id"].min()), int(frame["request_id"].max())
    rows = conn.execute(
        sa.select(_r.id, _r.matrix_id, _r.cell).where(_r.matrix_id.is_not(None), _r.id.between(low, high))
    ).all()
    if not rows:
        return frame
    cells = pd.DataFrame.from_records(
        [(row.id, row.matrix_id, row.cell or {}) for row in rows], columns=["request_id", "matrix_id", "cell"]
    ).set_index("request_id")
    at = frame["request_id"]
    matrix_ids = at.map(cells["matrix_id"])
    if matrix_ids.isna().all():
        return frame
    frame["matrix_id"] = pd.array(matrix_ids, dtype="Int64")
    axes = list(dict.fromkeys(name for cell in cells["cell"] for name in cell))
    taken = set(frame.columns)
    for axis in axes:
        values = at.map(cells["cell"].map(lambda cell, axis=axis: cell.get(axis)))
        column = f"matrix_{axis}" if axis in taken else axis
        known = values.dropna()
        text = known.map(lambda v: isinstance(v, str)).all()
        frame[column] = values.astype("string") if text else values
    return frame
