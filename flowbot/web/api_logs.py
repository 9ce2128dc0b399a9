"""Logs as people read them: any page of a step's log, how many lines it has, and its first error.

``GET /api/builds/{id}/steps/{n}/lines`` answers ``{"first", "lines": [[tag, text], ...], "total"}``
for ``?first=N&count=M`` (a page from line N), ``?tail=M`` (the last M lines) or ``?find=error``
(``{"line": N or null, "total"}``: the first line that reads as an error); ``?log=`` names a log
other than ``stdio``. The whole log, as text, is ``/api/builds/{id}/steps/{n}/log``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..defaults import LOG_TAIL_LINES
from ..errors import InvalidRequest
from .api import ApiHandler, flush_live, path_id

if TYPE_CHECKING:
    from .services import WebServices

#: Most lines one page may ask for.
MAX_PAGE_LINES = 10_000


class LogLinesHandler(ApiHandler):
    async def get(self, build_id: str, step: str) -> None:
        build, number = path_id(build_id, "build"), path_id(step, "step")
        name = self.get_query_argument("log", "stdio")
        store = self.reads.store
        await flush_live(self.reads.status, build, number, name)
        find = self.get_query_argument("find", None)
        if find is not None:
            if find != "error":
                raise InvalidRequest(f"find takes error, not {find!r}")
            line = await store.logs.first_error(build, number, name, after=self._line("after", 0))
            page = await store.logs.page(build, number, name, first=0, count=0)
            self.reply({"line": line, "total": page.total})
            return
        if self.get_query_argument("tail", None) is not None:
            first, count = None, self.int_argument("tail", LOG_TAIL_LINES, maximum=MAX_PAGE_LINES)
        else:
            first, count = self._line("first", 0), self.int_argument("count", LOG_TAIL_LINES, maximum=MAX_PAGE_LINES)
        page = await store.logs.page(build, number, name, first=first, count=count)
        self.reply({"first": page.first, "lines": page.lines, "total": page.total})

    def _line(self, argument: str, default: int) -> int:
        raw = self.get_query_argument(argument, None)
        if raw is None:
            return default
        if not raw.isdigit():
            raise InvalidRequest(f"{argument} must be a line number (0 or more), not {raw!r}")
        return int(raw)


def log_routes(services: WebServices) -> list[tuple[str, type, dict[str, Any]]]:
    return [(r"/api/builds/(\d+)/steps/(\d+)/lines", LogLinesHandler, {"services": services})]
