"""What the web page and outside tools read: overview, changes, rebuilds, log tails, badges, metrics."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest
import zmq

from flowbot.defaults import BUILDER_PENDING_SHOWN
from flowbot.errors import InvalidRequest, NotFound

from ..support import finished_builds, running_build, wait_for
from .test_access import basic, call

PIPELINE = """\
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, AnyBranchScheduler, StringParameter
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[AnyBranchScheduler("on-change", builders=["unit", "lint"]),
                ForceScheduler("force", builders=["unit", "lint", "slow"],
                               params=[StringParameter("flavour")])],
    builders=[
        Builder("unit", collapse_requests=False, workers=["w1"], steps=[Shell("seq 1 2000", name="count")]),
        Builder("lint", collapse_requests=False, workers=["w1"], steps=[Shell("exit 2", name="lint")]),
        Builder("slow", collapse_requests=False, workers=["w1"], steps=[Shell("echo started; sleep 30", name="wait")]),
    ],
)
"""


@pytest.fixture
def master(master_factory, worker_factory):
    master = master_factory(PIPELINE)
    worker_factory(master, "w1", "s")
    return master


def test_the_overview_is_one_call_with_each_builders_latest_builds(master):
    for n in range(3):
        master.client.sendchange(branch="main", revision=f"r{n}", author="alice", comments=f"change {n}", files=["a"])
    finished_builds(master.client, 6)
    overview = master.client.request("GET", "/api/builders", query={"builds": 2})
    unit = next(b for b in overview["builders"] if b["name"] == "unit")
    assert [b["number"] for b in unit["builds"]] == [3, 2]
    assert [b["result"] for b in next(b for b in overview["builders"] if b["name"] == "lint")["builds"]] == [
        "FAILURE",
        "FAILURE",
    ]
    assert unit["force"]["fields"][0] == {"name": "reason", "label": "Reason", "type": "text", "default": ""}
    assert isinstance(overview["event_id"], int) and unit["pending_requests"] == []

    changes = master.client.request("GET", "/api/changes", query={"limit": 2})["changes"]
    assert [(c["revision"], c["comments"], c["files"]) for c in changes] == [
        ("r2", "change 2", ["a"]),
        ("r1", "change 1", ["a"]),
    ]


def test_a_rebuild_repeats_the_sources_and_properties_and_links_back(master):
    master.client.force("unit", branch="feature", revision="cafe", properties={"flavour": "mint"})
    (original,) = finished_builds(master.client, 1)
    (request_id,) = master.client.rebuild(original["id"])
    rebuilt = next(b for b in finished_builds(master.client, 2) if b["request_id"] == request_id)
    detail = master.client.request("GET", f"/api/builds/{rebuilt['id']}")
    assert (detail["branch"], detail["revision"]) == ("feature", "cafe")
    assert detail["properties"]["flavour"] == ["mint", "Force Build Form"]
    assert detail["properties"]["rebuild_of"] == [original["id"], "Rebuild"]
    assert detail["reason"] == "rebuild of unit #1"
    with pytest.raises(NotFound, match="no build 999"):
        master.client.rebuild(999)


def test_a_log_tail_is_the_end_of_the_log_numbered_from_its_first_line(master):
    master.client.force("unit")
    (build,) = finished_builds(master.client, 1)
    status, text, headers = call(master, "GET", f"/api/builds/{build['id']}/steps/0/log?tail=5")
    assert status == 200
    lines = text.splitlines()
    assert lines[-1].startswith("program finished with exit code 0")
    assert lines[:4] == ["1997", "1998", "1999", "2000"]
    assert int(headers["X-First-Line"]) == 1997  # line 0 is the command, then 1..2000
    assert call(master, "GET", f"/api/builds/{build['id']}/steps/0/log?tail=zero")[0] == 400


def test_stopping_a_build_and_cancelling_requests(master):
    master.client.force("slow")
    build = running_build(master.client, "slow")
    (queued,) = master.client.force("slow")
    master.client.request("POST", f"/api/buildrequests/{queued}/cancel")
    master.client.stop(build["id"], "enough")
    (stopped,) = finished_builds(master.client, 1, builder="slow")
    assert stopped["result"] == "CANCELLED"
    with pytest.raises(InvalidRequest, match="is not running"):
        master.client.stop(build["id"])


def test_badges_show_the_last_finished_result(master):
    status, svg, headers = call(master, "GET", "/badges/unit.svg")
    assert status == 200 and headers["Content-Type"].startswith("image/svg+xml")
    assert "no builds" in svg
    master.client.force("lint")
    finished_builds(master.client, 1)
    _, svg, _ = call(master, "GET", "/badges/lint.svg?label=<lint>")
    assert 'aria-label="&lt;lint&gt;: failure"' in svg and "#e05d44" in svg
    assert "<lint>" not in svg
    status, body, _ = call(master, "GET", "/badges/nope.svg")
    assert (status, body["error"]) == (404, "no builder named 'nope'")


def test_metrics_in_prometheus_text_format(master):
    master.client.sendchange(branch="main", revision="r1")
    finished_builds(master.client, 2)
    status, text, headers = call(master, "GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'flowbot_builds_total{builder="unit",result="SUCCESS"} 1' in text
    assert 'flowbot_builds_total{builder="lint",result="FAILURE"} 1' in text
    assert 'flowbot_build_duration_seconds_count{builder="unit"} 1' in text
    assert 'flowbot_build_duration_seconds_bucket{builder="unit",le="+Inf"} 1' in text
    assert 'flowbot_queue_length{builder="slow"} 0' in text
    assert "flowbot_workers_connected 1" in text and "flowbot_workers_paused 0" in text
    master.client.pause_worker("w1", reason="disk full")
    assert "flowbot_workers_paused 1" in call(master, "GET", "/metrics")[1]
    master.client.unpause_worker("w1")
    assert "# TYPE flowbot_worker_messages_dropped_total counter" in text
    for line in text.splitlines():  # every sample line parses as name{labels} value
        assert line.startswith("#") or re.fullmatch(r"[a-z_]+(\{[^}]*\})? [0-9.e+-]+", line), line


def metric(master, sample: str) -> float | None:
    """The value of one sample (``name{labels}``) on the master's /metrics, or None when it is not there."""
    status, text, _ = call(master, "GET", "/metrics")
    assert status == 200
    values = [line.rpartition(" ")[2] for line in text.splitlines() if line.rpartition(" ")[0] == sample]
    return float(values[0]) if values else None


def test_metrics_show_how_late_the_event_loop_runs_and_speak_openmetrics_to_a_scraper_that_asks(master):
    # Given a master that has run a while
    status, text, _ = call(master, "GET", "/metrics")

    # Then /metrics has the event loop's lag as a histogram, its longest, and the process's own figures
    assert "# TYPE flowbot_loop_lag_seconds histogram" in text
    assert metric(master, "flowbot_loop_lag_seconds_count") > 0
    assert metric(master, 'flowbot_loop_lag_seconds_bucket{le="+Inf"}') == metric(
        master, "flowbot_loop_lag_seconds_count"
    )
    assert metric(master, "flowbot_loop_lag_seconds_max") >= 0
    assert metric(master, "process_resident_memory_bytes") > 0

    # And a scraper that asks for OpenMetrics gets it
    status, text, headers = call(
        master, "GET", "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n") and "# TYPE flowbot_builds counter" in text


def test_metrics_count_the_messages_dropped_from_the_worker_socket(master_factory):
    # Given a master, and someone who sends its worker socket a message too short and one of another protocol
    master = master_factory(PIPELINE)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(master.endpoint)
    try:
        sock.send_multipart([b"x"])
        sock.send_multipart([b"NOPE", b"", b"{}", b"{}"])
        sock.send_multipart([b"NOPE", b"", b"{}", b"{}"])
        # Then /metrics counts them, by reason
        wait_for(lambda: metric(master, 'flowbot_worker_messages_dropped_total{reason="bad-tag"}') == 2, 10)
    finally:
        sock.close()
        ctx.term()
    assert metric(master, 'flowbot_worker_messages_dropped_total{reason="short"}') == 1


def test_metrics_show_the_requests_waiting_for_a_worker_until_one_takes_them(master_factory, worker_factory):
    # Given a master with no worker connected, and three builds forced
    master = master_factory(PIPELINE)
    for builder in ("unit", "unit", "lint"):
        master.client.force(builder)

    # Then /metrics shows them waiting, by builder
    wait_for(lambda: metric(master, 'flowbot_queue_length{builder="unit"}') == 2, 10, "two unit requests queued")
    assert metric(master, 'flowbot_queue_length{builder="lint"}') == 1
    assert metric(master, 'flowbot_queue_length{builder="slow"}') == 0

    # And once a worker has built them, the queue is empty
    worker_factory(master, "w1", "s")
    finished_builds(master.client, 3)
    assert metric(master, 'flowbot_queue_length{builder="unit"}') == 0
    assert metric(master, 'flowbot_queue_length{builder="lint"}') == 0


def test_a_deep_queue_is_counted_in_the_builders_listing_and_read_a_page_at_a_time(master_factory):
    # Given a master with no worker, and a dozen builds of unit forced and one of lint
    master = master_factory(PIPELINE)
    forced = [master.client.force("unit")[0] for _ in range(12)]
    master.client.force("lint")

    # Then the builders' listing counts unit's requests and names only the first few in line
    unit = master.client.request("GET", "/api/builders/unit")
    assert unit["pending"] == 12 and unit["pending_requests"] == forced[:BUILDER_PENDING_SHOWN]

    # And the whole queue of unit is read a page at a time
    def page(offset: int) -> list[int]:
        query = {"pending": "true", "builder": "unit", "limit": 5, "offset": offset}
        return [r["id"] for r in master.client.request("GET", "/api/buildrequests", query=query)["buildrequests"]]

    assert page(0) + page(5) + page(10) == forced and page(15) == []
    with pytest.raises(InvalidRequest, match="offset must be between 0"):
        master.client.request("GET", "/api/buildrequests", query={"offset": -1})


def test_the_page_is_served_with_its_assets_and_a_strict_policy(master):
    status, html, headers = call(master, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    script = re.search(r'src="(/static/app\.js\?v=[0-9a-f]+)"', html).group(1)
    status, js, headers = call(master, "GET", script)
    assert status == 200 and "innerHTML" not in js
    wait_for(lambda: call(master, "GET", re.search(r'href="(/static/style\.css[^"]+)"', html).group(1))[0] == 200)


def test_a_whole_log_is_streamed_page_by_page(master_factory, worker_factory):
    # Given a step that printed about 3 MB (some fifty stored chunks)
    master = master_factory(
        PIPELINE.replace('Shell("seq 1 2000", name="count")', 'Shell("seq 1 400000", name="count")')
    )
    worker_factory(master, "w1", "s")
    master.client.force("unit")
    (build,) = finished_builds(master.client, 1)

    # When the whole log is asked for
    status, text, headers = call(master, "GET", f"/api/builds/{build['id']}/steps/0/log")

    # Then it comes complete and in order, sent as it is read rather than gathered first
    assert status == 200 and headers["Transfer-Encoding"] == "chunked"
    lines = text.splitlines()
    assert lines[1:400001] == [str(n) for n in range(1, 400001)]
    assert lines[-1].startswith("program finished with exit code 0")


def test_ids_no_row_can_have_are_not_found_on_either_database(master_factory, db_url):
    master = master_factory(PIPELINE, db=db_url)
    for too_large in ("99999999999999999999", "3000000000"):  # beyond SQLite's and PostgreSQL's integers
        for method, path in (
            ("GET", f"/api/builds/{too_large}"),
            ("GET", f"/api/builds/{too_large}/steps/0/log"),
            ("GET", f"/api/builds/1/steps/{too_large}/log?tail=5"),
            ("POST", f"/api/builds/{too_large}/stop"),
            ("POST", f"/api/builds/{too_large}/rebuild"),
            ("POST", f"/api/buildrequests/{too_large}/cancel"),
        ):
            status, body, _ = call(master, method, path, {} if method == "POST" else None)
            assert status == 404 and body["error"].startswith("no "), (path, status, body)


def test_json_nested_too_deeply_is_a_clear_bad_request(master_factory):
    master = master_factory(
        PIPELINE.replace("from flowbot import", "from flowbot import Auth, JsonHook,").replace(
            "pipeline = Pipeline(", 'pipeline = Pipeline(sources=[JsonHook()], auth=Auth(users={"alice": "pw"}),'
        )
    )
    # Too deep for Python's parser, and deep enough to break storing the change
    for depth in (100_000, 980):
        nested = '{"branch": "main", "properties": {"p": ' + "[" * depth + "]" * depth + "}}"
        for path in ("/api/changes", "/api/login", "/hooks/changes", "/api/builders/unit/force"):
            request = urllib.request.Request(
                master.url + path, data=nested.encode(), method="POST", headers=basic("alice", "pw")
            )
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(request, timeout=10)
            with error.value:
                assert error.value.code == 400, (depth, path)
                message = json.loads(error.value.read())["error"]
                assert message.startswith("the body's JSON is nested too deeply"), (depth, path)
    change = {"branch": "main", "properties": {"deep": [[["enough"]]]}}
    assert call(master, "POST", "/api/changes", change, basic("alice", "pw"))[0] == 201


def test_values_a_database_cannot_keep_are_refused_alike_on_either_database(master_factory, db_url):
    # Given a master on each database, and bodies Python would parse but a store cannot keep
    master = master_factory(PIPELINE, db=db_url)
    refused = {
        b'{"branch": "main", "properties": {"k": NaN}}': "NaN",
        b'{"branch": "main", "properties": {"k": -Infinity}}': "-Infinity",
        b'{"branch": "main", "comments": "a\\u0000b"}': "NUL character",
        b'{"branch": "main", "properties": {"a\\u0000": 1}}': "NUL character",
    }
    for body, word in refused.items():
        request = urllib.request.Request(master.url + "/api/changes", data=body, method="POST")
        # When each is posted, Then it is a bad request that says why, on SQLite and PostgreSQL alike
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request, timeout=10)
        with error.value:
            assert error.value.code == 400, body
            assert word in json.loads(error.value.read())["error"], body
    # And nothing was stored, while a clean change still is
    assert call(master, "GET", "/api/changes")[1]["changes"] == []
    status, body, _ = call(master, "GET", "/api/buildrequests?pending=maybe")
    assert (status, body["error"]) == (400, "pending must be true or false, not 'maybe'")
    assert call(master, "POST", "/api/changes", {"branch": "main", "properties": {"k": 1.5}})[0] == 201
