"""The master as people run it: the core master (:mod:`flowbot.master`) with its HTTP face (:mod:`flowbot.web`).

Here, and only here, the two are wired: the core knows no face, and the face knows the master only
through the narrow :class:`~flowbot.web.services.WebServices` made here from the core's parts.
"""

from __future__ import annotations

from typing import Any

from .defaults import HTTP_HOST
from .master import master as core
from .pipeline import Pipeline
from .web.http import HttpFace
from .web.services import Control, Gauges, Reads, WebServices


class Master(core.Master):
    """A flowbot master that serves its REST API, event stream, page and metrics over HTTP.

    Args:
        pipeline: what to run.
        http: ``"HOST:PORT"`` to serve the API on (port 0, the default: any free port), or None.
        options: the core master's (``db``, ``basedir``, ``workers``, ``heartbeat``, ``liveness``,
            ``name``: see :class:`flowbot.master.master.Master`).
    """

    def __init__(self, pipeline: Pipeline, *, http: str | None = f"{HTTP_HOST}:0", **options: Any):
        super().__init__(pipeline, **options)
        self._http = HttpFace(http, self.web_services) if http is not None else None
        if self._http is not None:
            self.attach(self._http)

    @property
    def http_url(self) -> str | None:
        """Where the API is served (``http://HOST:PORT``), once started; None without HTTP."""
        return self._http.url if self._http is not None else None

    def web_services(self) -> WebServices:
        """What the HTTP face uses of this master (its store open: made as the face starts)."""
        assert self.store is not None, "the store opens before the faces start"
        return WebServices(
            reads=Reads(
                pipeline=lambda: self.pipeline,
                store=self.store,
                status=self.status,
                instances=self.latent,
                instance_id=self.instance_id,
                artifacts_dir=lambda: self.artifacts_dir,
                history=lambda: self.history,
            ),
            control=Control(
                builds=self,
                workers=self.worker_control,
                approvals=self.approvals,
                hook=self.sources.by_name,
            ),
            events=self.events,
            gauges=Gauges(
                connections=self.registry.connections,
                dropped=self.registry.dropped,
                loop_lag=self.loop_lag,
                reporting=self.reporting,
            ),
        )
