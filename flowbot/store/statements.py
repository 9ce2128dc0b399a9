"""The statements of the build hot path, built once.

SQLAlchemy caches a statement's compiled form under a key it computes from the statement object;
building the object once (with bind parameters for the values) makes executing it about four times
cheaper than building it per call, and these run several times for every build.
"""

from sqlalchemy import bindparam, case, exists, func, select, update

from ..results import PRECEDENCE
from . import schema as t

INSERT_CHANGE = t.changes.insert()
INSERT_CHANGE_FILE = t.change_files.insert()
INSERT_BUILDSET = t.buildsets.insert()
INSERT_SOURCESTAMP = t.sourcestamps.insert()
INSERT_BUILDSET_CHANGE = t.buildset_changes.insert()
INSERT_REQUEST = t.buildrequests.insert()
INSERT_BUILD = t.builds.insert()
INSERT_STEP = t.steps.insert()
INSERT_LOG_CHUNK = t.log_chunks.insert()
INSERT_HELD = t.scheduler_changes.insert()
INSERT_BUILD_PROPERTY = t.build_properties.insert()

_request = t.buildrequests.c
#: Claim a pending request (``p_id``, ``p_at``, ``p_by``); matches no row once it is claimed or complete.
CLAIM_REQUEST = (
    update(t.buildrequests)
    .where(_request.id == bindparam("p_id"), _request.complete_at.is_(None), _request.claimed_at.is_(None))
    .values(claimed_at=bindparam("p_at"), claimed_by=bindparam("p_by"))
)
#: Put a request back in the queue (``p_id``).
UNCLAIM_REQUEST = (
    update(t.buildrequests).where(_request.id == bindparam("p_id")).values(claimed_at=None, claimed_by=None)
)
#: Complete a pending request (``p_id``, ``p_at``, ``p_result``).
COMPLETE_REQUEST = (
    update(t.buildrequests)
    .where(_request.id == bindparam("p_id"), _request.complete_at.is_(None))
    .values(complete_at=bindparam("p_at"), result=bindparam("p_result"))
)
# A result's place in Buildbot's precedence (0: worst), and back.
_rank = case({int(result): rank for rank, result in enumerate(PRECEDENCE)}, value=_request.result)
_worst_rank = select(func.min(_rank)).where(_request.buildset_id == bindparam("p_id")).scalar_subquery()
#: Complete a buildset (``p_id``, ``p_at``) once none of its requests is pending, with their worst result.
COMPLETE_BUILDSET = (
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
FINISH_STEP = (
    update(t.steps)
    .where(t.steps.c.id == bindparam("p_id"))
    .values(
        finished_at=bindparam("p_at"),
        result=bindparam("p_result"),
        summary=bindparam("p_summary"),
        hidden=bindparam("p_hidden"),
    )
)
#: End a build (``p_id``, ``p_at``, ``p_result``, ``p_summary``, ``p_locks``: seconds waited for locks).
FINISH_BUILD = (
    update(t.builds)
    .where(t.builds.c.id == bindparam("p_id"))
    .values(
        finished_at=bindparam("p_at"),
        result=bindparam("p_result"),
        summary=bindparam("p_summary"),
        locks_wait=bindparam("p_locks"),
    )
)
