"""Pull requests: ``GET /api/pullrequests?state=open|closed|all&limit=`` and ``/api/pullrequests/{id}``.

Each pull request (or merge request) is ``{id, repository, number, title, url, base_branch,
head_branch, head_repository, author, fork, updated_at, closed_at, state}`` with ``builds``: the
newest build of each builder that built it. The list is open pull requests by default, the most
recently changed first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest, NotFound
from ..record_json import pull_request_json
from .api import ApiHandler, path_id

if TYPE_CHECKING:
    from .services import WebServices

_STATES = {"open": "open", "closed": "closed", "all": None}


class PullRequestsHandler(ApiHandler):
    async def get(self) -> None:
        raw = self.get_query_argument("state", "open")
        if raw not in _STATES:
            raise InvalidRequest(f"state must be one of {list(_STATES)}, not {raw!r}")
        found = await self.reads.store.pull_requests.query(state=_STATES[raw], limit=self.int_argument("limit", 50))
        self.reply({"pullrequests": [pull_request_json(p) for p in found]})


class PullRequestHandler(ApiHandler):
    async def get(self, pull_request_id: str) -> None:
        wanted = path_id(pull_request_id, "pull request")
        found = await self.reads.store.pull_requests.query(state=None, limit=1, pull_request_id=wanted)
        if not found:
            raise NotFound(f"no pull request {wanted}")
        self.reply(pull_request_json(found[0]))


def pull_request_routes(services: WebServices) -> list[tuple[str, type, dict[str, Any]]]:
    args = {"services": services}
    return [
        (r"/api/pullrequests", PullRequestsHandler, args),
        (r"/api/pullrequests/(\d+)", PullRequestHandler, args),
    ]
