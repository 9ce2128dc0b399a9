"""Roles, and people named by a trusted reverse proxy: who may force, stop, pause and reconfigure,
per builder, against a real master and worker."""

from __future__ import annotations

import pytest

from flowbot import Auth, Builder, ConfigError, Pipeline, Role, Shell, Worker

from ..support import finished_builds, running_build
from .test_access import basic, call

PIPELINE = """\
from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Auth, Role, ProxyHeader
pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=["unit", "release"])],
    builders=[
        Builder("unit", workers=["w1"], steps=[Shell("sleep 30", name="slow")]),
        Builder("release", workers=["w1"], steps=[Shell("echo released", name="ship")]),
    ],
    auth=Auth(
        users={{"alice": "a-pass", "bob": "b-pass"}},
        tokens={{"nightly-bot": "tok-nightly"}},
        proxy=ProxyHeader(trusted={trusted!r}),
        roles=[
            Role("developers", users=["bob"], groups=["dev"], may=["force", "stop"], builders=["unit"]),
            Role("release managers", users=["alice"], groups=["release"], may=["force", "stop"]),
            Role("operators", users=["alice"], may=["pause", "reconfigure", "sendchange"]),
        ],
    ),
)
"""


def test_roles_say_who_may_do_what_to_which_builder(master_factory, worker_factory):
    master = master_factory(PIPELINE.format(trusted=["10.255.255.1"]))
    worker_factory(master, "w1", "s")
    bob, alice = basic("bob", "b-pass"), basic("alice", "a-pass")

    # Bob (developers) may force and stop unit, and nothing else
    status, answer, _ = call(master, "POST", "/api/builders/unit/force", {}, bob)
    assert status == 201, answer
    build = running_build(master.client, "unit")
    status, answer, _ = call(master, "POST", "/api/builders/release/force", {}, bob)
    assert status == 403 and answer["error"] == (
        "bob may not force builds of 'release': no role of this master's pipeline allows it"
    )
    for path in ("/api/workers/w1/pause", "/api/reconfig", "/api/changes"):
        status, answer, _ = call(master, "POST", path, {"branch": "main"} if "changes" in path else {}, bob)
        assert status == 403 and answer["error"].startswith("bob may not "), path
    status, _, _ = call(master, "POST", f"/api/builds/{build['id']}/rebuild", {}, bob)
    assert status == 201  # a rebuild is a force of the same builder
    # A token no role names may do nothing
    token = {"Authorization": "Bearer tok-nightly"}
    status, answer, _ = call(master, "POST", "/api/builders/unit/force", {}, token)
    assert status == 403 and answer["error"].startswith("nightly-bot may not force builds of 'unit'")

    # Alice (release managers, operators) may pause the worker and force release; bob stops his build
    status, answer, _ = call(master, "POST", "/api/workers/w1/pause", {"reason": "upgrade"}, alice)
    assert status == 200 and answer["paused"] is True
    status, answer, _ = call(master, "POST", "/api/builders/release/force", {}, alice)
    assert status == 201, answer
    status, _, _ = call(master, "POST", f"/api/builds/{build['id']}/stop", {}, bob)
    assert status == 200
    assert finished_builds(master.client, 1, builder="unit")[0]["result"] == "CANCELLED"
    # And pending requests are cancelled by whoever may stop builds of their builder
    pending = master.client.request("GET", "/api/buildrequests", query={"pending": "true"})["buildrequests"]
    unit = next(r for r in pending if r["builder"] == "unit")
    release = next(r for r in pending if r["builder"] == "release")
    assert call(master, "POST", f"/api/buildrequests/{release['id']}/cancel", {}, bob)[0] == 403
    assert call(master, "POST", f"/api/buildrequests/{unit['id']}/cancel", {}, bob)[0] == 200
    assert "refused POST /api/builders/release/force to bob: no role allows it" in master.log()


def test_a_proxys_header_names_people_only_from_the_proxys_addresses(master_factory, worker_factory):
    # Given a master that trusts the proxy at 127.0.0.1 (where the tests' requests come from)
    master = master_factory(PIPELINE.format(trusted=["127.0.0.0/8"]))
    worker_factory(master, "w1", "s")
    carol = {"X-Forwarded-User": "carol", "X-Forwarded-Groups": "staff, release"}

    # Then whoami says who the proxy named, with an anti-forgery token the page repeats
    status, me, _ = call(master, "GET", "/api/whoami", headers=carol)
    assert status == 200 and me["user"] == "carol" and me["csrf"]
    status, answer, _ = call(master, "POST", "/api/builders/release/force", {}, carol)
    assert status == 403 and "X-Flowbot-CSRF" in answer["error"]
    # And carol's groups give her the release managers' role
    headers = {**carol, "X-Flowbot-CSRF": me["csrf"]}
    status, answer, _ = call(master, "POST", "/api/builders/release/force", {}, headers)
    assert status == 201, answer
    dave = {"X-Forwarded-User": "dave", "X-Forwarded-Groups": "dev"}
    dave["X-Flowbot-CSRF"] = call(master, "GET", "/api/whoami", headers=dave)[1]["csrf"]
    assert call(master, "POST", "/api/builders/release/force", {}, dave)[0] == 403
    assert call(master, "POST", "/api/builders/unit/force", {}, dave)[0] == 201
    # Carol's token is no use to dave
    assert call(master, "POST", "/api/builders/unit/force", {}, {**dave, "X-Flowbot-CSRF": me["csrf"]})[0] == 403


def test_a_header_from_anywhere_but_the_proxy_names_nobody(master_factory):
    # Given a master whose proxy is at another address
    master = master_factory(PIPELINE.format(trusted=["10.255.255.1"]))

    # Then the same header from here is ignored: no user, and control needs credentials
    carol = {"X-Forwarded-User": "alice", "X-Forwarded-Groups": "release"}
    assert call(master, "GET", "/api/whoami", headers=carol)[1]["user"] is None
    assert call(master, "POST", "/api/builders/release/force", {}, carol)[0] == 401


def test_roles_that_name_what_does_not_exist_fail_checkconfig_with_file_and_line():
    worker = Worker("w1", secret="s")
    unit = Builder("unit", workers=["w1"], steps=[Shell("true")])
    role = Role("devs", users=["bob"], may=["force"], builders=["unit", "relaese"])
    with pytest.raises(ConfigError) as caught:
        Pipeline(workers=[worker], builders=[unit], auth=Auth(roles=[role]))
    assert f"{__file__}:{role.defined_at.lineno}: role 'devs' names builder 'relaese', which no builder defines" in str(
        caught.value
    )
    for arguments, problem in [
        ({"may": ["force", "deploy"]}, "role 'r' may 'deploy', which is no permission; use force, stop, approve"),
        ({"may": []}, "role 'r' allows nothing"),
        ({"users": [], "may": ["stop"]}, "role 'r' names nobody"),
        ({"may": ["pause"], "builders": ["unit"]}, "role 'r' names builders, but pause concern no builder"),
    ]:
        with pytest.raises(ConfigError) as caught:
            Role("r", **{"users": ["bob"], **arguments})
        assert problem in str(caught.value) and caught.value.filename == __file__, arguments
