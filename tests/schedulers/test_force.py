"""Forcing builds: a field left empty is missing, for the scheduler and through the API."""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import AsyncHTTPClient

import flowbot
from flowbot import Builder, ForceScheduler, IntParameter, Pipeline, Shell, StringParameter, Worker
from flowbot.record_json import build_json


def scheduler() -> ForceScheduler:
    return ForceScheduler(
        "force",
        ["b"],
        params=[
            StringParameter("version", required=True),
            StringParameter("note", default="none"),
            IntParameter("jobs", default=2),
            IntParameter("shard", required=True, minimum=0),
        ],
    )


def forced(**properties: object) -> dict[str, object]:
    spec = scheduler().force(properties={"version": "1.0", "shard": 0, **properties})
    return {name: value for name, (value, _) in spec.properties.items()}


@pytest.mark.parametrize("empty", ["", "   ", None])
def test_a_required_string_left_empty_is_missing(empty):
    with pytest.raises(ValueError, match=r"^version is required$"):
        forced(version=empty)


@pytest.mark.parametrize("empty", ["", " "])
def test_an_int_left_empty_is_missing_not_zero(empty):
    assert forced(jobs=empty)["jobs"] == 2  # the default
    with pytest.raises(ValueError, match=r"^shard is required$"):
        forced(shard=empty)


def test_an_optional_string_may_be_empty():
    assert forced(note="")["note"] == ""
    assert forced()["note"] == "none"
    assert forced(version=" 1.0 ", shard="3")["shard"] == 3


async def test_the_api_refuses_a_required_parameter_left_empty(tmp_path):
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[scheduler()],
        builders=[Builder("b", workers=["w1"], steps=[Shell("true")])],
    )
    master = flowbot.Master(pipeline, db=f"sqlite:///{tmp_path / 'm.db'}")
    await master.start()
    client = AsyncHTTPClient()
    try:
        for properties, message in [
            ({"version": "", "shard": "1"}, "version is required"),
            ({"version": "1.0", "shard": ""}, "shard is required"),
        ]:
            answer = await client.fetch(
                f"{master.http_url}/api/builders/b/force",
                method="POST",
                body=json.dumps({"properties": properties}),
                headers={"Content-Type": "application/json"},
                raise_error=False,
            )
            assert answer.code == 400
            assert json.loads(answer.body)["error"] == message
        assert [build_json(b) for b in await master.store.builds.query()] == []
    finally:
        client.close()
        await master.stop()
