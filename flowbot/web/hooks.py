"""``POST /hooks/{name}``: webhook deliveries, handed to the running webhook source of that name.

Parsing and checking live in :mod:`flowbot.sources.webhooks`; this handler only finds the hook,
answers 403 (and logs who was refused) when a signature or token is wrong, and replies with the
ids of the changes it created. A delivery is checked by its hook's own secret or token, never by
the master's users and API tokens: GitHub and GitLab cannot send those.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import Forbidden, NotFound
from ..sources.webhooks import Webhook
from .access import check_same_origin
from .api import ApiHandler

if TYPE_CHECKING:
    from .services import WebServices

log = logging.getLogger(__name__)


class HookHandler(ApiHandler):
    """One delivery to a webhook source: 200 ``{"change_ids": [...]}`` (and a ``note`` when empty)."""

    async def prepare(self) -> None:
        check_same_origin(self)  # a page on another site may not post changes; GitHub sends no Origin

    async def post(self, name: str) -> None:
        hook = self.control.hook(name)
        if not isinstance(hook, Webhook):
            raise NotFound(f"no webhook named {name!r} is running")
        try:
            ids, note = await hook.deliver(self.request.headers, self.request.body)
        except Forbidden as exc:
            log.warning("webhook %s refused a delivery from %s: %s", name, self.request.remote_ip, exc)
            raise
        reply: dict[str, Any] = {"change_ids": ids}
        if note:
            reply["note"] = note
        self.reply(reply)


def hook_routes(services: WebServices) -> list[tuple[str, type, dict[str, Any]]]:
    return [(r"/hooks/([^/]+)/?", HookHandler, {"services": services})]
