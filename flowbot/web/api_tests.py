"""A build's test results: ``GET /api/builds/{id}/tests?outcome=failed,error&limit=``.

Answers ``{"tests": [...], "counts": {"failed": 3, "passed": 120}, "summary": "3 failed, 120 passed"}``;
each test has its suite, class, name, outcome, duration (seconds), message (a failure's text), file
and line (where its report says it is), and the number and name of the step that reported it.
Failures come first, then errors, skips and passes, each in the order they were reported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest
from ..junit import Outcome, describe
from ..record_json import reported_test_json
from .api import ApiHandler, path_id

if TYPE_CHECKING:
    from .services import WebServices

#: Most test results one answer holds.
MAX_TESTS = 10_000


class TestsHandler(ApiHandler):
    async def get(self, build_id: str) -> None:
        build = path_id(build_id, "build")
        await self.reads.store.builds.get(build)  # NotFound for a build that does not exist
        raw = self.get_query_argument("outcome", None)
        outcomes = None
        if raw:
            outcomes = [o.strip() for o in raw.split(",") if o.strip()]
            unknown = set(outcomes) - {str(o) for o in Outcome}
            if unknown:
                raise InvalidRequest(f"unknown outcome(s) {sorted(unknown)}; use {[str(o) for o in Outcome]}")
        limit = self.int_argument("limit", 1000, maximum=MAX_TESTS)
        tests = await self.reads.store.steps.test_results(build, outcomes=outcomes, limit=limit)
        counts = await self.reads.store.steps.test_counts(build)
        self.reply({"tests": [reported_test_json(t) for t in tests], "counts": counts, "summary": describe(counts)})


def test_routes(services: WebServices) -> list[tuple[str, type, dict[str, Any]]]:
    return [(r"/api/builds/(\d+)/tests", TestsHandler, {"services": services})]
