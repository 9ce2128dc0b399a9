"""The statements of the build hot path, built once and run through :mod:`.fastpath`.

Every build runs each of these once or more; built once, with bind parameters for the values,
they are compiled once per database and executed straight on the driver's cursor.
"""

from sqlalchemy import bindparam, case, exists, func, select, update

from ..results import PRECEDENCE
from . import schema as t
from .fastpath import Statement

INSERT_CHANGE = Statement(
    t.changes.insert(),
    [
        "repository",
        "branch",
        "revision",
        "project",
        "codebase",
        "author",
        "committer",
        "comments",
        "category",
        "revlink",
        "when_at",
        "received_at",
        "properties",
    ],
)
INSERT_CHANGE_FILE = Statement(t.change_files.insert(), ["change_id", "path"])
INSERT_BUILDSET = Statement(
    t.buildsets.insert(), ["scheduler", "reason", "properties", "submitted_at", "parent_build_id", "pull_request_id"]
)
INSERT_SOURCESTAMP = Statement(
    t.sourcestamps.insert(), ["buildset_id", "codebase", "repository", "branch", "revision", "project"]
)
INSERT_BUILDSET_CHANGE = Statement(t.buildset_changes.insert(), ["buildset_id", "change_id"])
INSERT_REQUEST = Statement(
    t.buildrequests.insert(), ["buildset_id", "builder", "priority", "submitted_at", "matrix_id", "cell"]
)
#: A build of request ``p_request`` (its ``request_id`` too), which builds its buildset's pull request,
#: with the properties it starts with.
INSERT_BUILD = Statement(
    t.builds.insert().values(
        pull_request_id=select(t.buildsets.c.pull_request_id)
        .join(t.buildrequests, t.buildrequests.c.buildset_id == t.buildsets.c.id)
        .where(t.buildrequests.c.id == bindparam("p_request"))
        .scalar_subquery()
    ),
    [
        "request_id",
        "builder",
        "number",
        "worker",
        "branch",
        "revision",
        "submitted_at",
        "started_at",
        "summary",
        "attempt",
        "properties",
    ],
)
INSERT_STEP = Statement(t.steps.insert(), ["build_id", "number", "name", "started_at", "hidden", "summary"])
INSERT_LOG_CHUNK = Statement(
    t.log_chunks.insert(), ["step_id", "log", "first_line", "last_line", "content", "streams", "compressed"]
)
INSERT_HELD = Statement(t.scheduler_changes.insert(), ["scheduler", "change_id", "timer", "important"])

_request = t.buildrequests.c
#: Claim a pending request (``p_id``, ``p_at``, ``p_by``); matches no row once it is claimed or complete.
CLAIM_REQUEST = Statement(
    update(t.buildrequests)
    .where(_request.id == bindparam("p_id"), _request.complete_at.is_(None), _request.claimed_at.is_(None))
    .values(claimed_at=bindparam("p_at"), claimed_by=bindparam("p_by"))
)
#: Put a request back in the queue (``p_id``).
UNCLAIM_REQUEST = Statement(
    update(t.buildrequests).where(_request.id == bindparam("p_id")).values(claimed_at=None, claimed_by=None)
)
#: Complete a pending request (``p_id``, ``p_at``, ``p_result``).
COMPLETE_REQUEST = Statement(
    update(t.buildrequests)
    .where(_request.id == bindparam("p_id"), _request.complete_at.is_(None))
    .values(complete_at=bindparam("p_at"), result=bindparam("p_result"))
)
# A result's place in Buildbot's precedence (0: worst), and back.
_rank = case({int(result): rank for rank, result in enumerate(PRECEDENCE)}, value=_request.result)
_worst_rank = select(func.min(_rank)).where(_request.buildset_id == bindparam("p_id")).scalar_subquery()
#: Complete a buildset (``p_id``, ``p_at``) once none of its requests is pending, with their worst result.
COMPLETE_BUILDSET = Statement(
    update(t.buildsets)
    .where(
        t.buildsets.c.id == bindparam("p_id"),
        ~exists().where(_request.buildset_id == bindparam("p_id"), _request.complete_at.is_(None)),
    )
    .values(
        complete_at=bindparam("p_at"),
        result=case({rank: int(result) for rank, result in enumerate(PRECEDENCE)}, value=_worst_rank),
    )
)
#: End a step (``p_id``, ``p_at``, ``p_result``, ``p_summary``, ``p_hidden``).
FINISH_STEP = Statement(
    update(t.steps)
    .where(t.steps.c.id == bindparam("p_id"))
    .values(
        finished_at=bindparam("p_at"),
        result=bindparam("p_result"),
        summary=bindparam("p_summary"),
        hidden=bindparam("p_hidden"),
        attempts=bindparam("p_attempts"),
    )
)

_finish_build = (
    update(t.builds)
    .where(t.builds.c.id == bindparam("p_id"))
    .values(
        finished_at=bindparam("p_at"),
        result=bindparam("p_result"),
        summary=bindparam("p_summary"),
        locks_wait=bindparam("p_locks"),
        revision=func.coalesce(bindparam("p_revision"), t.builds.c.revision),
    )
)
#: End a build (``p_id``, ``p_at``, ``p_result``, ``p_summary``, ``p_locks``: seconds waited for
#: locks, ``p_revision``: the revision it built, or None to keep the one it started with), keeping
#: the properties it has stored.
FINISH_BUILD = Statement(_finish_build)
#: The same, with the properties it ended with (``p_properties``).
FINISH_BUILD_WITH_PROPERTIES = Statement(_finish_build.values(properties=bindparam("p_properties")))

#: Record a running build's properties (``p_id``, ``p_properties``).
SET_BUILD_PROPERTIES = Statement(
    update(t.builds).where(t.builds.c.id == bindparam("p_id")).values(properties=bindparam("p_properties"))
)

_held = t.scheduler_changes.c
#: Let go of a change a scheduler held under a key (``p_scheduler``, ``p_key``, ``p_change``).
RELEASE_HELD = Statement(
    t.scheduler_changes.delete().where(
        _held.scheduler == bindparam("p_scheduler"),
        _held.timer == bindparam("p_key"),
        _held.change_id == bindparam("p_change"),
    )
)
