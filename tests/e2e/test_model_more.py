"""More of the pipeline model end to end: Interpolate's modifiers, SetPropertyFromCommand's extract_fn.
Each test names the Buildbot behaviour it proves."""

from __future__ import annotations

from ..support import finished_builds, step_log


def build_detail(client, build_id: int) -> dict:
    return client.request("GET", f"/api/builds/{build_id}")


def test_modifiers_and_extract_fn_read_a_build_as_buildbot_does(master_factory, worker_factory):
    # Buildbot: Interpolate's documented modifiers, and interop/test_setpropertyfromcommand.py
    master = master_factory("""
        from flowbot import (Pipeline, Worker, Builder, Shell, SetProperty, SetPropertyFromCommand, Interpolate,
                             ForceScheduler)

        def count(rc, stdout, stderr):
            return {"rc": rc, "passed": stdout.count("ok"), "failed": stderr.count("FAIL")}

        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["render"])],
            builders=[Builder("render", workers=["w1"], steps=[
                SetProperty("empty", ""),
                SetPropertyFromCommand("echo ok; echo ok; echo FAIL >&2; exit 3", extract_fn=count, name="tests",
                                       flunk_on_failure=False),
                SetPropertyFromCommand("echo 9.9; exit 1", property="version", name="version",
                                       flunk_on_failure=False),
                Shell(Interpolate("echo set=%(prop:empty:?|yes|no)s true=%(prop:empty:#?|yes|no)s"
                                  " missing=%(prop:missing:?|yes|no)s version=%(prop:version:-none)s"
                                  " tag=%(prop:tag:-%(prop:branch:-trunk)s)s passed=%(prop:passed)s"), name="show"),
            ])],
        )
    """)
    worker_factory(master, "w1", "s")
    master.client.force("render")
    (build,) = finished_builds(master.client, 1)
    detail = build_detail(master.client, build["id"])

    # extract_fn saw the failed command's exit code and output; property= is set only on success
    assert [(s["name"], s["result"]) for s in detail["steps"]][1:] == [
        ("tests", "FAILURE"),
        ("version", "FAILURE"),
        ("show", "SUCCESS"),
    ]
    properties = detail["properties"]
    assert {name: properties[name][0] for name in ("rc", "passed", "failed")} == {"rc": 3, "passed": 2, "failed": 1}
    assert properties["rc"][1] == "SetPropertyFromCommand Step"
    assert "version" not in properties
    # :? asks whether the value is set, :#? whether it is true; a default holds another key
    assert "set=yes true=no missing=no version=none tag=trunk passed=2\n" in step_log(master.client, build["id"], 3)

