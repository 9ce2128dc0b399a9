"""Which change broke the build: the changes between a builder's last good build and its first bad one.

Along each branch a builder's verdicts (SUCCESS or WARNINGS good, FAILURE or EXCEPTION bad; other
results say nothing of the code and are skipped) go from good to bad at some build. The suspects
are the changes on that branch that arrived after the good build was requested and up to when the
bad one was: a scheduler requests a build in the same transaction that stores its change, so these
are exactly the changes the bad build saw first, including those of requests merged or cancelled
in between.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import sqlalchemy as sa

from ..store import schema as t
from .dtypes import FAILING, VERDICTS, TimeLike, timestamps

if TYPE_CHECKING:
    from .reader import Reader

_b, _c = t.builds.c, t.changes.c

COLUMNS = [
    "branch",
    "good_build",
    "bad_build",
    "good_revision",
    "bad_revision",
    "failed_at",
    "change_id",
    "revision",
    "author",
    "comments",
    "when",
]


def culprits(reader: Reader, builder: str, since: TimeLike = None, until: TimeLike = None) -> pd.DataFrame:
    """For each time ``builder`` went from passing to failing, the changes that may have done it."""
    if not isinstance(builder, str):
        raise ValueError(f"culprits needs one builder's name; got {builder!r}")
    columns = (_b.branch, _b.number, _b.revision, _b.result, _b.started_at, reader.submitted_at.label("submitted_at"))
    query = reader.with_requests(sa.select(*columns)).where(_b.result.in_([int(r) for r in VERDICTS]))
    builds = reader.read(reader.build_filter(query, builder=builder, since=since, until=until).order_by(_b.id))
    builds["bad"] = builds["result"].isin([int(r) for r in FAILING])
    before = builds.groupby("branch", dropna=False).shift()
    broke = builds["bad"] & (before["bad"] == False)  # noqa: E712 (False, not missing: there was a build before)
    transitions = pd.DataFrame(
        {
            "branch": builds["branch"][broke],
            "good_build": before["number"][broke].astype("int64"),
            "bad_build": builds["number"][broke],
            "good_revision": before["revision"][broke],
            "bad_revision": builds["revision"][broke],
            "failed_at": builds["started_at"][broke],
            "after": before["submitted_at"][broke],
            "upto": builds["submitted_at"][broke],
        }
    )
    if transitions.empty:
        return _empty()
    changes = _changes_between(reader, transitions)
    # Each change belongs to the first transition on its branch requested at or after it arrived.
    suspects = pd.merge_asof(
        changes.sort_values("received_at"),
        transitions.sort_values("upto"),
        left_on="received_at",
        right_on="upto",
        by="branch",
        direction="forward",
    )
    suspects = suspects[suspects["received_at"] > suspects["after"]]
    out = transitions.merge(suspects[["bad_build", "change_id", "revision", "author", "comments", "when"]], how="left")
    out = out.sort_values(["failed_at", "change_id"], ignore_index=True)
    out["failed_at"], out["when"] = timestamps(out["failed_at"]), timestamps(out["when"])
    out["change_id"] = out["change_id"].astype("Int64")
    return out[COLUMNS]


def _changes_between(reader: Reader, transitions: pd.DataFrame) -> pd.DataFrame:
    """The changes on the transitions' branches received in the span they cover (a superset)."""
    columns = [_c.id.label("change_id"), _c.branch, _c.revision, _c.author, _c.comments, _c.when_at.label("when")]
    query = sa.select(*columns, _c.received_at)
    branches = transitions["branch"].dropna().unique().tolist()
    on_branch = _c.branch.in_(branches)
    if transitions["branch"].isna().any():
        on_branch = on_branch | _c.branch.is_(None)
    return reader.read(
        query.where(
            on_branch,
            _c.received_at > float(transitions["after"].min()),
            _c.received_at <= float(transitions["upto"].max()),
        )
    )


def _empty() -> pd.DataFrame:
    utc = "datetime64[ns, UTC]"
    dtypes = ["str", "int64", "int64", "str", "str", utc, "Int64", "str", "str", "str", utc]
    return pd.DataFrame({column: pd.Series(dtype=d) for column, d in zip(COLUMNS, dtypes, strict=True)})
