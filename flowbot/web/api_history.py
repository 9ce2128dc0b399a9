"""History in the page: log search, the grid of revisions by builder, one change and its builds.

- ``GET /api/search?q=TEXT&builder=&limit=``: log lines holding the text (any case), newest builds
  first, through the store's full-text index (:mod:`flowbot.analysis.search`); run off the event
  loop, as a reader of the database like any notebook's.
- ``GET /api/grid?revisions=N``: the newest N revisions built, each with its change (when a change
  brought it) and its builds by builder, as Buildbot's console view shows them.
- ``GET /api/changes/{id}``: a change with the builds it caused.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest, NotFound
from ..record_json import build_json, build_link_json, change_json
from .api import ApiHandler, path_id

if TYPE_CHECKING:
    from .services import WebServices

#: Most lines one search answers with, and most revisions the grid shows.
MAX_SEARCH_LINES = 1000
MAX_GRID_REVISIONS = 100
#: Builds read to fill the grid, per revision asked for.
GRID_BUILDS_PER_REVISION = 20


class SearchHandler(ApiHandler):
    async def get(self) -> None:
        text = self.get_query_argument("q", "").strip()
        if not text:
            raise InvalidRequest("q: give the text to look for")
        builder = self.get_query_argument("builder", None) or None
        limit = self.int_argument("limit", 200, maximum=MAX_SEARCH_LINES)
        history = self.reads.history  # made on first use, which imports pandas: off the loop too
        lines = await asyncio.to_thread(lambda: history().search_logs(text, builder=builder, limit=limit))
        found = [
            {
                "build_id": int(row.build_id),
                "builder": row.builder,
                "number": int(row.build_number),
                "started_at": row.started_at.timestamp(),
                "step": int(row.step_number),
                "step_name": row.step,
                "log": row.log,
                "line": int(row.line_number),
                "stream": row.stream,
                "text": row.line,
            }
            for row in lines.itertuples()
        ]
        self.reply({"query": text, "lines": found, "limited": len(found) >= limit})


class GridHandler(ApiHandler):
    async def get(self) -> None:
        wanted = self.int_argument("revisions", 20, maximum=MAX_GRID_REVISIONS)
        store = self.reads.store
        builds = await store.builds.query(limit=wanted * GRID_BUILDS_PER_REVISION)
        rows: dict[str, dict[str, Any]] = {}
        for build in builds:  # newest first: a revision's row is placed by its newest build
            revision = build.revision
            if not revision:
                continue
            if revision not in rows:
                if len(rows) == wanted:
                    continue
                rows[revision] = {"revision": revision, "branch": build.branch, "change": None, "builds": {}}
            shown = build_json(build)
            cell = {k: shown[k] for k in ("id", "number", "result", "started_at", "finished_at")}
            rows[revision]["builds"].setdefault(build.builder, []).insert(0, cell)
        changes = await store.changes.recent(limit=max(wanted * 5, 100))
        for change in changes[::-1]:  # the newest change of a revision wins
            row = rows.get(change.revision or "")
            if row is not None:
                shown = change_json(change)
                row["change"] = {k: shown[k] for k in ("id", "author", "comments", "when", "revlink", "branch")}
        names = [b.name for b in self.reads.pipeline().builders]
        names += sorted({name for row in rows.values() for name in row["builds"]} - set(names))
        self.reply({"builders": names, "rows": list(rows.values())})


class ChangeHandler(ApiHandler):
    async def get(self, change_id: str) -> None:
        number = path_id(change_id, "change")
        found = await self.reads.store.changes.recent(change_id=number, limit=1)
        if not found:
            raise NotFound(f"no change {number}")
        builds = await self.reads.store.changes.builds_of([number])
        self.reply({**change_json(found[0]), "builds": [build_link_json(b) for b in builds.get(number, ())]})


def history_routes(services: WebServices) -> list[tuple[str, type, dict[str, Any]]]:
    args = {"services": services}
    return [
        (r"/api/search", SearchHandler, args),
        (r"/api/grid", GridHandler, args),
        (r"/api/changes/(\d+)", ChangeHandler, args),
    ]
