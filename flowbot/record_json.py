"""The JSON of the records people read: builds, steps, build requests, changes (and the builds they
caused), test results, stored files, pull requests and workers.

Made here and only here, so the REST API, the event stream and the command line agree on every
key; results travel by name (``"SUCCESS"``), times as epoch seconds. Each ``*_from_json`` reads
back what its ``*_json`` wrote (reporters read a build's event with it).
"""

from __future__ import annotations

from typing import Any

from .records import (
    Build,
    BuildLink,
    BuildRequest,
    Change,
    ReportedTest,
    RunningRef,
    SourceStamp,
    StepRecord,
    StoredArtifact,
    StoredPullRequest,
    WorkerState,
)
from .results import Result


def result_json(result: Result | None) -> str | None:
    return result.name if result is not None else None


def result_from_json(name: str | None) -> Result | None:
    return Result[name] if name is not None else None


def build_json(build: Build) -> dict[str, Any]:
    """A build as lists show it (no steps, no properties)."""
    return {
        "id": build.id,
        "builder": build.builder,
        "number": build.number,
        "worker": build.worker,
        "result": result_json(build.result),
        "branch": build.branch,
        "revision": build.revision,
        "request_id": build.request_id,
        "submitted_at": build.submitted_at,
        "started_at": build.started_at,
        "finished_at": build.finished_at,
        "summary": build.summary,
        "attempt": build.attempt,
    }


def build_detail_json(build: Build) -> dict[str, Any]:
    """A build as its own page shows it: with its steps and properties (``{name: [value, source]}``)."""
    return {
        **build_json(build),
        "steps": [step_json(step) for step in build.steps],
        "properties": {name: list(pair) for name, pair in build.properties.items()},
    }


def build_event_json(build: Build) -> dict[str, Any]:
    """A build as its ``build.started`` and ``build.finished`` events carry it: as lists show it,
    without the summary."""
    shown = build_json(build)
    del shown["summary"]
    return shown


def build_report_json(build: Build) -> dict[str, Any]:
    """A build as reporters post it (an HTTP push's default body): with its sources, properties,
    steps and stored files."""
    return {
        "id": build.id,
        "builder": build.builder,
        "number": build.number,
        "worker": build.worker,
        "started_at": build.started_at,
        "finished_at": build.finished_at,
        "result": result_json(build.result),
        "previous_result": result_json(build.previous_result),
        "branch": build.branch,
        "revision": build.revision,
        "reason": build.reason,
        "sourcestamps": [
            {"codebase": s.codebase, "repository": s.repository, "branch": s.branch, "revision": s.revision}
            for s in build.sourcestamps
        ],
        "properties": build.properties,
        "steps": [{"number": s.number, "name": s.name, "result": result_json(s.result)} for s in build.steps],
        "url": build.url,
        "artifacts": [{"path": a.path, "size": a.size, "sha256": a.sha256, "url": a.url} for a in build.artifacts],
    }


def build_from_json(data: dict[str, Any]) -> Build:
    """A build from any of the shapes above (keys a shape lacks keep their defaults)."""
    return Build(
        id=data["id"],
        builder=data["builder"],
        number=data["number"],
        worker=data["worker"],
        started_at=data["started_at"],
        finished_at=data["finished_at"],
        result=result_from_json(data["result"]),
        branch=data["branch"],
        revision=data["revision"],
        request_id=data["request_id"],
        submitted_at=data["submitted_at"],
        summary=data.get("summary", ""),
        attempt=data["attempt"],
        steps=tuple(step_from_json(step) for step in data.get("steps", ())),
        properties={name: tuple(pair) for name, pair in data.get("properties", {}).items()},
    )


def step_json(step: StepRecord) -> dict[str, Any]:
    return {
        "number": step.number,
        "name": step.name,
        "result": result_json(step.result),
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "summary": step.summary,
        "hidden": step.hidden,
        "attempts": step.attempts,
        "logs": list(step.logs),
    }


def step_from_json(data: dict[str, Any]) -> StepRecord:
    return StepRecord(
        number=data["number"],
        name=data["name"],
        result=result_from_json(data["result"]),
        started_at=data["started_at"],
        finished_at=data["finished_at"],
        summary=data["summary"],
        hidden=data["hidden"],
        attempts=data["attempts"],
        logs=tuple(data["logs"]),
    )


def request_json(request: BuildRequest) -> dict[str, Any]:
    """A build request as the API lists it (by its first source's branch and revision)."""
    first = request.sourcestamps[0] if request.sourcestamps else SourceStamp()
    return {
        "id": request.id,
        "buildset_id": request.buildset_id,
        "builder": request.builder,
        "priority": request.priority,
        "reason": request.reason,
        "branch": first.branch,
        "revision": first.revision,
        "submitted_at": request.submitted_at,
        "claimed_at": request.claimed_at,
        "complete_at": request.complete_at,
        "result": result_json(request.result),
        "summary": request.summary,
        "matrix_id": request.matrix_id,
        "cell": request.cell,
    }


def change_json(change: Change) -> dict[str, Any]:
    """A stored change as the API lists it."""
    return {
        "id": change.id,
        "repository": change.repository,
        "branch": change.branch,
        "revision": change.revision,
        "project": change.project,
        "codebase": change.codebase,
        "author": change.author,
        "committer": change.committer,
        "comments": change.comments,
        "category": change.category,
        "revlink": change.revlink,
        "received_at": change.received_at,
        "properties": change.properties,
        "when": change.when,
        "files": list(change.files),
    }


def change_brief_json(change: Change) -> dict[str, Any]:
    """A change as a build's page lists the changes that caused it."""
    return {
        "id": change.id,
        "revision": change.revision,
        "branch": change.branch,
        "author": change.author,
        "comments": change.comments,
        "when": change.when,
        "revlink": change.revlink,
    }


def build_link_json(build: BuildLink) -> dict[str, Any]:
    """A build as a change's page lists the builds it caused."""
    return {"id": build.id, "builder": build.builder, "number": build.number, "result": result_json(build.result)}


def reported_test_json(test: ReportedTest) -> dict[str, Any]:
    """A test case a build's step reported, with the step's number and name."""
    case = test.case
    return {
        "suite": case.suite,
        "classname": case.classname,
        "name": case.name,
        "outcome": str(case.outcome),
        "duration": case.duration,
        "message": case.message,
        "file": case.file or None,
        "line": case.line,
        "step": test.step,
        "step_name": test.step_name,
    }


def artifact_json(artifact: StoredArtifact, *, content_type: str, url: str, available: bool) -> dict[str, Any]:
    """A file a build stored, with what the page knows of it: its content type, where it is
    downloaded, and whether it is still there as stored."""
    return {
        "path": artifact.path,
        "size": artifact.size,
        "sha256": artifact.sha256,
        "step": artifact.step,
        "step_name": artifact.step_name,
        "stored_at": artifact.stored_at,
        "content_type": content_type,
        "url": url,
        "available": available,
    }


def pull_request_json(stored: StoredPullRequest) -> dict[str, Any]:
    """A pull request as the API shows it, with its builds when they were read with it."""
    pr = stored.pull_request
    shown: dict[str, Any] = {
        "id": stored.id,
        "repository": pr.repository,
        "number": pr.number,
        "title": pr.title,
        "url": pr.url,
        "base_branch": pr.base_branch,
        "head_branch": pr.head_branch,
        "head_repository": pr.head_repository,
        "author": pr.author,
        "fork": pr.fork,
        "updated_at": stored.updated_at,
        "closed_at": stored.closed_at,
        "state": stored.state,
    }
    if stored.builds is not None:
        shown["builds"] = [build_json(build) for build in stored.builds]
    return shown


def worker_json(worker: WorkerState) -> dict[str, Any]:
    """A worker as the API shows it, with the builds it runs."""
    return {
        "name": worker.name,
        "launcher": worker.launcher,
        "connected": worker.connected,
        "connected_at": worker.connected_at,
        "last_seen": worker.last_seen,
        "info": dict(worker.info),
        "running_builds": [{"id": b.id, "builder": b.builder, "number": b.number} for b in worker.running],
        "paused": worker.paused,
        "paused_reason": worker.paused_reason,
        "shutting_down": worker.shutting_down,
        "held": worker.held,
    }


def worker_from_json(data: dict[str, Any]) -> WorkerState:
    """A worker from what :func:`worker_json` wrote (a client reads the API's workers with it)."""
    return WorkerState(
        name=data["name"],
        launcher=data["launcher"],
        connected=data["connected"],
        connected_at=data["connected_at"],
        last_seen=data["last_seen"],
        info=data["info"],
        running=tuple(RunningRef(b["id"], b["builder"], b["number"]) for b in data["running_builds"]),
        paused=data["paused"],
        paused_reason=data["paused_reason"],
        shutting_down=data["shutting_down"],
        held=data["held"],
    )
