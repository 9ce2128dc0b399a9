"""The pipeline model end to end: properties, triggers, locks, custom steps, secrets, step flags,
collapsing. Each test names the Buildbot integration behaviour it proves where there is one."""

from __future__ import annotations

import time

from ..gitrepos import GitRepo
from ..support import finished_builds, running_build, step_log, wait_for


def build_detail(client, build_id: int) -> dict:
    return client.request("GET", f"/api/builds/{build_id}")


def test_a_property_set_from_a_command_is_used_by_a_later_step(master_factory, worker_factory):
    # Buildbot: interop/test_setpropertyfromcommand.py
    master = master_factory("""
        from flowbot import (Pipeline, Worker, Builder, Shell, SetPropertyFromCommand, SetProperty,
                             Interpolate, Property, ForceScheduler, renderer)

        @renderer
        def twice(build):
            return str(int(build.properties["jobs"]) * 2)

        pipeline = Pipeline(
            workers=[Worker("w1", secret="s", properties={"os_family": "unix"})],
            properties={"team": "core"},
            schedulers=[ForceScheduler("force", builders=["version"])],
            builders=[Builder("version", workers=["w1"], properties={"jobs": 3}, steps=[
                Shell("echo 2.4.1 > VERSION", name="write"),
                SetPropertyFromCommand(command="cat VERSION", property="version", name="read"),
                SetProperty("channel", Interpolate("%(prop:branch:-stable)s-%(prop:version)s")),
                Shell(Interpolate("echo make VERSION=%(prop:version)s CHANNEL=%(prop:channel)s "
                                  "TEAM=%(prop:team)s OS=%(prop:os_family)s JOBS=%(kw:j)s WORKER=%(worker:os)s",
                                  j=twice), name="use"),
                Shell(["echo", Property("missing", default="fallback")], name="default"),
            ])],
        )
    """)
    worker_factory(master, "w1", "s")
    master.client.force("version")
    (build,) = finished_builds(master.client, 1)
    assert build["result"] == "SUCCESS"
    assert "make VERSION=2.4.1 CHANNEL=stable-2.4.1 TEAM=core OS=unix JOBS=6 WORKER=posix" in step_log(
        master.client, build["id"], 3
    )
    assert "fallback" in step_log(master.client, build["id"], 4)
    properties = build_detail(master.client, build["id"])["properties"]
    assert properties["version"] == ["2.4.1", "SetPropertyFromCommand Step"]
    assert properties["channel"] == ["stable-2.4.1", "SetProperty Step"]
    assert properties["team"] == ["core", "Pipeline"]
    assert properties["jobs"] == [3, "Builder"]
    assert properties["buildnumber"] == [1, "Build"]


TRIGGERS = """
    from flowbot import Pipeline, Worker, Builder, Shell, Trigger, Triggerable, ForceScheduler
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s"), Worker("w2", secret="s")],
        schedulers=[
            ForceScheduler("force", builders=["parent"]),
            Triggerable("children", builders=["child-ok", "child-fails"]),
        ],
        builders=[
            Builder("parent", workers=["w1"], steps=[
                Trigger(schedulers=["children"], wait_for_finish=True, set_properties={{"from_parent": "yes"}}),
                Shell("echo after the trigger", name="after"),
            ]),
            Builder("child-ok", workers=["w2"], steps=[Shell("{ok}", name="ok")]),
            Builder("child-fails", workers=["w2"], steps=[Shell("{fails}", name="fails")]),
        ],
    )
"""


def test_a_trigger_that_waits_inherits_the_failure_of_what_it_triggered(master_factory, worker_factory):
    # Buildbot: test_trigger.py
    master = master_factory(TRIGGERS.format(ok="echo $FLOWBOT_BRANCH", fails="exit 1"))
    worker_factory(master, "w1", "s")
    worker_factory(master, "w2", "s")
    master.client.force("parent", branch="release", revision="r42")
    builds = {b["builder"]: b for b in finished_builds(master.client, 3)}
    assert builds["child-ok"]["result"] == "SUCCESS"
    assert builds["child-fails"]["result"] == "FAILURE"
    assert builds["parent"]["result"] == "FAILURE"
    assert builds["parent"]["finished_at"] >= builds["child-fails"]["finished_at"]
    # The children built the parent's sources, with the properties it gave them
    assert (builds["child-ok"]["branch"], builds["child-ok"]["revision"]) == ("release", "r42")
    assert build_detail(master.client, builds["child-ok"]["id"])["properties"]["from_parent"] == ["yes", "Trigger"]
    parent_steps = build_detail(master.client, builds["parent"]["id"])["steps"]
    assert [(s["name"], s["result"]) for s in parent_steps] == [("trigger", "FAILURE"), ("after", "SUCCESS")]


def test_stopping_a_parent_stops_the_builds_it_triggered(master_factory, worker_factory):
    # Buildbot: test_stop_trigger.py
    master = master_factory(TRIGGERS.format(ok="sleep 60", fails="sleep 60"))
    worker_factory(master, "w1", "s")
    worker_factory(master, "w2", "s")
    master.client.force("parent")
    parent = running_build(master.client, "parent")
    running_build(master.client, "child-ok")

    master.client.request("POST", f"/api/builds/{parent['id']}/stop", {"reason": "wrong release"})

    # (both children may run on w2, one per builder, and end in either order)
    builds = {name: finished_builds(master.client, 1, timeout=20, builder=name)[0] for name in ("parent", "child-ok")}
    assert builds["parent"]["result"] == "CANCELLED"
    assert builds["child-ok"]["result"] == "CANCELLED"
    child_log = step_log(master.client, builds["child-ok"]["id"], 0)
    assert "parent build parent #1 stopped: wrong release" in child_log
    # A child that had not started was withdrawn, not left waiting
    wait_for(lambda: master.client.buildrequests(pending=True) == [], 10, "the queue to empty")


def test_triggered_builds_check_out_the_commit_their_parent_built_even_if_the_branch_moved(
    master_factory, worker_factory, tmp_path
):
    # Buildbot: Trigger(updateSourceStamp=True), its default
    repo = GitRepo(tmp_path / "project")
    built = repo.commit("First")
    go = tmp_path / "go"
    master = master_factory(f"""
        from flowbot import Pipeline, Worker, Builder, Shell, Git, Trigger, Triggerable, ForceScheduler
        REPO = {repo.url!r}
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[
                ForceScheduler("force", builders=["parent"]),
                Triggerable("same", builders=["same-commit"]),
                Triggerable("latest", builders=["branch-head"]),
            ],
            builders=[
                Builder("parent", workers=["w1"], steps=[
                    Git(REPO),
                    Shell("while [ ! -e {go} ]; do sleep 0.05; done", name="wait"),
                    Trigger("same", wait_for_finish=True),
                    Trigger("latest", wait_for_finish=True, update_sourcestamp=False),
                ]),
                Builder("same-commit", workers=["w1"], steps=[Git(REPO)]),
                Builder("branch-head", workers=["w1"], steps=[Git(REPO)]),
            ],
        )
    """)
    worker_factory(master, "w1", "s")

    # Given a parent forced without a revision, which checked out the branch's head
    master.client.force("parent")
    parent = running_build(master.client, "parent")
    wait_for(lambda: build_detail(master.client, parent["id"])["current_step"] == 1, 20, "the parent's checkout")

    # When a new commit lands on the branch before the parent triggers its children
    moved = repo.commit("Second")
    go.touch()

    # Then the child builds the parent's commit, and one triggered without update_sourcestamp the new head
    builds = {b["builder"]: b for b in finished_builds(master.client, 3)}
    assert {name: b["result"] for name, b in builds.items()} == dict.fromkeys(builds, "SUCCESS")
    got = {name: build_detail(master.client, b["id"])["properties"]["got_revision"][0] for name, b in builds.items()}
    assert got == {"parent": built, "same-commit": built, "branch-head": moved}
    # (each records the revision it built: the one triggered without a revision, the head it checked out)
    assert (builds["same-commit"]["revision"], builds["branch-head"]["revision"]) == (built, moved)


def test_a_dependent_scheduler_follows_upstream_builds_with_warnings_but_not_failures(master_factory, worker_factory):
    # Buildbot: a Dependent scheduler fires on SUCCESS and WARNINGS
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Dependent
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[
                ForceScheduler("force", builders=["package"]),
                Dependent("after-package", upstream="package", builders=["publish"]),
            ],
            builders=[
                Builder("package", workers=["w1"], collapse_requests=False, steps=[
                    Shell('test "$FLOWBOT_BRANCH" != warns', name="lint", flunk_on_failure=False,
                          warn_on_failure=True),
                    Shell('test "$FLOWBOT_BRANCH" != fails', name="package"),
                ]),
                Builder("publish", workers=["w1"], steps=[Shell("echo publish $FLOWBOT_BRANCH")]),
            ],
        )
    """)
    worker_factory(master, "w1", "s")

    # When one package build fails and one ends with warnings
    master.client.force("package", branch="fails")
    master.client.force("package", branch="warns")

    # Then only the one with warnings is published
    finished_builds(master.client, 3)
    wait_for(lambda: master.client.buildrequests(pending=True) == [], 10, "the queue to empty")
    assert [(b["builder"], b["branch"], b["result"]) for b in master.client.builds()] == [
        ("publish", "warns", "SUCCESS"),
        ("package", "warns", "WARNINGS"),
        ("package", "fails", "FAILURE"),
    ]


def test_an_exception_in_a_custom_step_gives_exception_with_the_traceback(master_factory, worker_factory):
    # Buildbot: test_custom_buildstep.py
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, Step, Result, ForceScheduler

        class CountLines(Step):
            default_name = "count"

            async def run(self, build):
                outcome = await build.run_command("shell", {"command": "printf 'a\\\\nb\\\\nc\\\\n'"}, collect=True)
                build.set_property("lines", len(outcome.stdout.splitlines()), "CountLines")
                build.log("summary").stdout(f"{len(outcome.stdout.splitlines())} lines")
                return Result.SUCCESS

        class Broken(Step):
            async def run(self, build):
                raise RuntimeError("the custom step broke")

        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["custom"])],
            builders=[Builder("custom", workers=["w1"], steps=[
                CountLines(), Broken(name="broken"), Shell("echo not reached", name="later"),
            ])],
        )
    """)
    worker_factory(master, "w1", "s")
    master.client.force("custom")
    (build,) = finished_builds(master.client, 1)
    detail = build_detail(master.client, build["id"])
    assert detail["result"] == "EXCEPTION"
    assert [(s["name"], s["result"]) for s in detail["steps"]] == [("count", "SUCCESS"), ("broken", "EXCEPTION")]
    assert detail["steps"][0]["logs"] == ["stdio", "summary"]
    assert master.client.request("GET", f"/api/builds/{build['id']}/steps/0/log", query={"name": "summary"}) == (
        "3 lines\n"
    )
    assert detail["properties"]["lines"] == [3, "CountLines"]
    log = step_log(master.client, build["id"], 1)
    assert "Traceback" in log and "RuntimeError: the custom step broke" in log


def test_two_builders_sharing_a_lock_of_count_one_never_overlap(master_factory, worker_factory):
    # Buildbot: test_locks.py
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, MasterLock
        deploy = MasterLock("deploy", max_count=1)
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s"), Worker("w2", secret="s")],
            schedulers=[ForceScheduler("force", builders=["a", "b"])],
            builders=[
                Builder("a", workers=["w1"], locks=[deploy.access("exclusive")], steps=[Shell("sleep 0.5")]),
                Builder("b", workers=["w2"], locks=[deploy.access("exclusive")], steps=[Shell("sleep 0.5")]),
            ],
        )
    """)
    worker_factory(master, "w1", "s")
    worker_factory(master, "w2", "s")
    master.client.force("a")
    master.client.force("b")
    first, second = finished_builds(master.client, 2)
    assert first["result"] == second["result"] == "SUCCESS"
    assert second["started_at"] >= first["finished_at"] - 0.01


def test_a_build_waiting_for_a_lock_starts_as_soon_as_a_step_gives_it_back(master_factory, worker_factory):
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, MasterLock
        database = MasterLock("database", max_count=1)
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s"), Worker("w2", secret="s")],
            schedulers=[ForceScheduler("force", builders=["migrate", "report"])],
            builders=[
                Builder("migrate", workers=["w1"], steps=[
                    Shell("sleep 2", name="migrate", locks=[database.access("exclusive")]),
                    Shell("sleep 30", name="clean up"),
                ]),
                Builder("report", workers=["w2"], locks=[database.access("exclusive")], steps=[Shell("true")]),
            ],
        )
    """)
    worker_factory(master, "w1", "s")
    worker_factory(master, "w2", "s")
    # Given a build whose first step holds a lock, and a build of another builder waiting for it
    master.client.force("migrate")
    migrate = running_build(master.client, "migrate")
    master.client.force("report")

    # When the step ends and gives the lock back, the waiting build runs at once, not when the holder ends
    (report,) = finished_builds(master.client, 1, timeout=15, builder="report")
    assert report["result"] == "SUCCESS"
    lock_step = build_detail(master.client, migrate["id"])["steps"][0]
    assert report["submitted_at"] < lock_step["finished_at"] <= report["started_at"]
    assert build_detail(master.client, migrate["id"])["finished_at"] is None


def test_a_step_lock_makes_steps_wait_and_the_wait_is_recorded(master_factory, worker_factory):
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, WorkerLock
        disk = WorkerLock("disk", max_count=1)
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["a", "b"])],
            builders=[
                Builder(name, workers=["w1"], steps=[
                    Shell("sleep 0.4", name="heavy", locks=[disk.access("exclusive")]),
                ]) for name in ("a", "b")
            ],
        )
    """)
    worker_factory(master, "w1", "s")
    master.client.force("a")
    master.client.force("b")
    builds = finished_builds(master.client, 2)
    logs = [step_log(master.client, b["id"], 0) for b in builds]
    assert sum("waited" in log and "s for locks disk:exclusive" in log for log in logs) == 1


def test_secrets_are_rendered_where_used_and_never_shown(master_factory, worker_factory, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "token").write_text("s3cr3t-t0ken\n")
    master = master_factory(f"""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Interpolate, SecretsInDirectory
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            secrets=[SecretsInDirectory({str(secrets)!r})],
            schedulers=[ForceScheduler("force", builders=["deploy"])],
            builders=[Builder("deploy", workers=["w1"], steps=[
                Shell(Interpolate("echo using %(secret:token)s; test %(secret:token)s = s3cr3t-t0ken"),
                      name="deploy"),
                Shell(Interpolate("echo %(secret:nope)s"), name="missing"),
            ])],
        )
    """)
    worker_factory(master, "w1", "s")
    master.client.force("deploy")
    (build,) = finished_builds(master.client, 1)
    detail = build_detail(master.client, build["id"])
    assert [s["result"] for s in detail["steps"]] == ["SUCCESS", "EXCEPTION"]
    log = step_log(master.client, build["id"], 0)
    assert "using <secret>" in log
    assert "s3cr3t" not in log
    assert "no secret named 'nope'" in step_log(master.client, build["id"], 1)
    assert "s3cr3t" not in str(detail["properties"])


def test_properties_made_from_secrets_are_used_but_never_stored_or_shown(master_factory, worker_factory, tmp_path):
    # Given a token and a key of several lines, and a build that makes properties of them
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "token").write_text("s3cr3t-t0ken\n")
    (secrets / "key").write_text("-----BEGIN KEY-----\nAAAA1111bbbb\nCCCC2222dddd\n-----END KEY-----\n")
    master = master_factory(f"""
        from flowbot import (Pipeline, Worker, Builder, Shell, ForceScheduler, Interpolate, Property,
                             SecretsInDirectory, SetProperty, SetPropertyFromCommand, Trigger, Triggerable)
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            secrets=[SecretsInDirectory({str(secrets)!r})],
            schedulers=[ForceScheduler("force", builders=["deploy"]), Triggerable("after", builders=["child"])],
            builders=[
                Builder("deploy", workers=["w1"], steps=[
                    SetProperty("auth", Interpolate("Bearer %(secret:token)s")),
                    SetPropertyFromCommand(command=Interpolate("echo token=%(secret:token)s"), property="echoed"),
                    Shell(["sh", "-c", 'test "$1" = "Bearer s3cr3t-t0ken"', "sh", Property("auth")], name="use"),
                    Shell(Interpolate("echo '%(secret:key)s'; echo; echo '%(secret:key)s' | tail -n 2"), name="key"),
                    Trigger("after", wait_for_finish=True, copy_properties=["auth"],
                            set_properties={{"token": Interpolate("%(secret:token)s")}}),
                    Shell("sleep 1", name="linger"),
                ]),
                Builder("child", workers=["w1"], steps=[Shell("true")]),
            ],
        )
    """)
    worker_factory(master, "w1", "s")

    # When the build runs
    master.client.force("deploy")

    # Then while it runs, and once it is done, its properties show where the secrets were, not them
    running = running_build(master.client, "deploy")
    live = wait_for(
        lambda: (d := build_detail(master.client, running["id"]))["current_step"] == 5 and d, 20, "the last step"
    )
    builds = {b["builder"]: b for b in finished_builds(master.client, 2)}
    assert builds["deploy"]["result"] == "SUCCESS"  # the steps saw the real values
    for properties in (live["properties"], build_detail(master.client, builds["deploy"]["id"])["properties"]):
        assert properties["auth"] == ["Bearer <secret>", "SetProperty Step"]
        assert properties["echoed"] == ["token=<secret>", "SetPropertyFromCommand Step"]
    child = build_detail(master.client, builds["child"]["id"])["properties"]
    assert (child["token"], child["auth"]) == (["<secret>", "Trigger"], ["Bearer <secret>", "Trigger"])
    # And the key is hidden in the log whole, and line by line where its lines come on their own
    output = step_log(master.client, builds["deploy"]["id"], 3).splitlines()[1:-1]
    assert output[-2:] == ["<secret>", "<secret>"]
    assert set(output) == {"<secret>", ""}
    # And neither secret is anywhere in the database
    master.stop()
    stored = b"".join(path.read_bytes() for path in master.basedir.glob("state.sqlite*"))
    assert b"s3cr3t-t0ken" not in stored
    assert b"AAAA1111bbbb" not in stored


def test_a_secret_in_a_steps_exception_is_hidden_in_the_masters_own_log_too(master_factory, worker_factory, tmp_path):
    # Given a custom step that fails with a message holding a secret it used
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "token").write_text("s3cr3t-t0ken\n")
    master = master_factory(f"""
        from flowbot import Pipeline, Worker, Builder, ForceScheduler, SecretsInDirectory, Step

        class Login(Step):
            async def run(self, build):
                raise RuntimeError(f"login refused for token {{build.secret('token')}}")

        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            secrets=[SecretsInDirectory({str(secrets)!r})],
            schedulers=[ForceScheduler("force", builders=["deploy"])],
            builders=[Builder("deploy", workers=["w1"], steps=[Login(name="login")])],
        )
    """)
    worker_factory(master, "w1", "s")

    # When it runs
    master.client.force("deploy")
    (build,) = finished_builds(master.client, 1)

    # Then the master logs the exception, with the secret hidden as in the step's log
    assert build["result"] == "EXCEPTION"
    assert "RuntimeError: login refused for token <secret>" in step_log(master.client, build["id"], 0)
    wait_for(lambda: "raised RuntimeError('login refused for token <secret>')" in master.log(), 10, "the master's log")
    assert "s3cr3t" not in master.log()


def test_do_step_if_skips_and_hide_step_if_hides(master_factory, worker_factory):
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, Result
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["flags"])],
            builders=[Builder("flags", workers=["w1"], steps=[
                Shell("echo release only", name="publish",
                      do_step_if=lambda build: build.properties["branch"] == "release"),
                Shell("echo noise", name="noise", hide_step_if=lambda result, build: result == Result.SUCCESS),
                Shell("echo shown; for i in 1 2 3; do echo case $i ok >> report.txt; sleep 0.3; done", name="shown",
                      logfiles={"report": "report.txt"}),
            ])],
        )
    """)
    worker_factory(master, "w1", "s")
    master.client.force("flags", branch="main")
    (build,) = finished_builds(master.client, 1)
    steps = build_detail(master.client, build["id"])["steps"]
    assert build["result"] == "SUCCESS"
    assert [(s["name"], s["result"], s["hidden"]) for s in steps] == [
        ("publish", "SKIPPED", False),
        ("noise", "SUCCESS", True),
        ("shown", "SUCCESS", False),
    ]
    assert steps[2]["logs"] == ["report", "stdio"]
    report = master.client.request("GET", f"/api/builds/{build['id']}/steps/2/log", query={"name": "report"})
    assert report == "case 1 ok\ncase 2 ok\ncase 3 ok\n"


def test_waiting_requests_for_the_same_branch_collapse_into_the_newest(master_factory, worker_factory):
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, AnyBranchScheduler
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[AnyBranchScheduler("changes", builders=["test"])],
            builders=[Builder("test", workers=["w1"], steps=[Shell("sleep 0.5")])],
        )
    """)
    worker_factory(master, "w1", "s")
    # Given a build running for the first change
    first = master.client.sendchange(branch="main", revision="c1")["buildrequest_ids"][0]
    running_build(master.client, "test")
    # When three more changes arrive on main while it runs, and one on another branch
    ids = [master.client.sendchange(branch="main", revision=f"c{i}")["buildrequest_ids"][0] for i in (2, 3, 4)]
    other = master.client.sendchange(branch="feature", revision="f1")["buildrequest_ids"][0]
    # Then the waiting ones on main collapse into the newest; the other branch builds on its own
    wait_for(lambda: master.client.buildrequests(pending=True) == [], 30, "the queue to empty")
    done = {r["id"]: r["result"] for r in master.client.buildrequests(pending=False)}
    assert done[first] == "SUCCESS"
    assert (done[ids[0]], done[ids[1]], done[ids[2]]) == ("SKIPPED", "SKIPPED", "SUCCESS")
    assert done[other] == "SUCCESS"
    assert sorted(b["revision"] for b in master.client.builds()) == ["c1", "c4", "f1"]


def test_filesystem_steps_and_a_master_side_command(master_factory, worker_factory, tmp_path):
    master = master_factory("""
        from flowbot import (Pipeline, Worker, Builder, Shell, ForceScheduler, MakeDirectory, RemoveDirectory,
                             MasterShell, Interpolate)
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["fs"])],
            builders=[Builder("fs", workers=["w1"], steps=[
                MakeDirectory("out/deep"),
                Shell("test -d ../out/deep && echo made > ../out/deep/file", name="use"),
                RemoveDirectory("out"),
                Shell("test ! -e ../out", name="gone"),
                MasterShell(Interpolate("echo ran on the master for %(prop:buildername)s > master-side.txt")),
            ])],
        )
    """)
    worker_factory(master, "w1", "s")
    master.client.force("fs")
    (build,) = finished_builds(master.client, 1)
    steps = build_detail(master.client, build["id"])["steps"]
    assert [(s["name"], s["result"]) for s in steps] == [
        ("mkdir", "SUCCESS"),
        ("use", "SUCCESS"),
        ("rmdir", "SUCCESS"),
        ("gone", "SUCCESS"),
        ("master shell", "SUCCESS"),
    ]
    assert (master.basedir / "master-side.txt").read_text() == "ran on the master for fs\n"


def test_files_a_build_moves_stay_inside_the_artifacts_directory_whatever_its_properties_say(
    master_factory, worker_factory, tmp_path
):
    # Given a pipeline that names files on the master after the branch, and two absolute paths: one
    # in the artifacts directory, one elsewhere
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("keep me\n")
    published = tmp_path / "master" / "artifacts" / "published" / "out.txt"
    elsewhere = tmp_path / "published" / "out.txt"
    master = master_factory(f"""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, FileUpload, FileDownload, Interpolate
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["publish"])],
            builders=[Builder("publish", workers=["w1"], steps=[
                Shell("echo artifact > out.txt", name="make"),
                FileUpload("out.txt", Interpolate("artifacts/%(prop:branch)s.txt"), name="upload"),
                FileDownload(Interpolate("artifacts/%(prop:branch)s.txt"), "back.txt", name="download"),
                FileUpload("out.txt", {str(published)!r}, name="publish"),
                FileUpload("out.txt", Interpolate({str(elsewhere)!r}), name="elsewhere"),
            ])],
        )
    """)
    worker_factory(master, "w1", "s")

    # When it builds an ordinary branch, the files go where the pipeline says, in the artifacts directory
    master.client.force("publish", branch="release")
    (good,) = finished_builds(master.client, 1)
    steps = build_detail(master.client, good["id"])["steps"]
    assert [s["result"] for s in steps] == ["SUCCESS"] * 4 + ["FAILURE"]
    assert (master.basedir / "artifacts" / "release.txt").read_text() == "artifact\n"
    assert published.read_text() == "artifact\n"
    # ... and nowhere else, saying so
    assert f"upload refused: {str(elsewhere)!r} leads out of the master's artifacts directory" in step_log(
        master.client, good["id"], 4
    )
    assert not elsewhere.exists()

    # And when a branch name tries to lead out of the master's directory, both transfers are refused
    master.client.force("publish", branch="../../outside/secret")
    _, bad = finished_builds(master.client, 2)
    steps = build_detail(master.client, bad["id"])["steps"]
    assert [(s["name"], s["result"]) for s in steps] == [
        ("make", "SUCCESS"),
        ("upload", "FAILURE"),
        ("download", "FAILURE"),
        ("publish", "SUCCESS"),
        ("elsewhere", "FAILURE"),
    ]
    refusal = "'artifacts/../../outside/secret.txt' leads out of the master's artifacts directory"
    assert refusal in step_log(master.client, bad["id"], 1)
    assert refusal in step_log(master.client, bad["id"], 2)
    assert (outside / "secret.txt").read_text() == "keep me\n"
    assert list(outside.iterdir()) == [outside / "secret.txt"]


def test_a_worker_that_drops_mid_step_retries_and_builds_again_when_it_is_back(master_factory, worker_factory):
    # Buildbot: interop/test_worker_reconnect.py
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["slow"])],
            builders=[Builder("slow", workers=["w1"], steps=[Shell("sleep 1", name="sleep")])],
        )
    """)
    worker = worker_factory(master, "w1", "s")
    (request_id,) = master.client.force("slow")
    running_build(master.client, "slow")
    worker.kill()
    time.sleep(1.2)  # lost after the liveness window (3 x 0.3 s)
    worker_factory(master, "w1", "s")
    retried, again = finished_builds(master.client, 2, timeout=30)
    assert (retried["result"], again["result"]) == ("RETRY", "SUCCESS")
    assert retried["request_id"] == again["request_id"] == request_id


def test_junit_reports_come_back_as_test_results_and_bad_ones_warn(master_factory, worker_factory):
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
        REPORT = '''<testsuite name="unit"><testcase classname="tests.test_core" name="test_ok" time="0.5"/>
        <testcase classname="tests.test_core" name="test_bad" time="0.1"><failure message="1 != 2">trace</failure>
        </testcase><testcase classname="tests.test_core" name="test_later"><skipped/></testcase></testsuite>'''
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s")],
            schedulers=[ForceScheduler("force", builders=["tests"])],
            builders=[Builder("tests", workers=["w1"], steps=[
                Shell(f"cat > report.xml <<'EOF'\\n{REPORT}\\nEOF", name="good", junit="report.xml"),
                Shell("echo '<testsuite><testcase' > broken.xml", name="broken", junit="broken.xml"),
                Shell("true", name="missing", junit="nothing.xml"),
            ])],
        )
    """)
    worker_factory(master, "w1", "s")
    master.client.force("tests")
    (build,) = finished_builds(master.client, 1)
    steps = build_detail(master.client, build["id"])["steps"]
    assert [(s["name"], s["result"]) for s in steps] == [
        ("good", "SUCCESS"),
        ("broken", "WARNINGS"),
        ("missing", "WARNINGS"),
    ]
    assert "1 failed, 1 passed, 1 skipped" in step_log(master.client, build["id"], 0)
    assert "broken.xml" in step_log(master.client, build["id"], 1)
    assert "no such file on the worker" in step_log(master.client, build["id"], 2)

    import flowbot

    results = flowbot.History(f"sqlite:///{master.basedir / 'state.sqlite'}").test_results()
    assert sorted(zip(results["name"], results["outcome"].astype(str), strict=True)) == [
        ("test_bad", "failed"),
        ("test_later", "skipped"),
        ("test_ok", "passed"),
    ]


def test_priorities_next_build_next_worker_and_max_builds_decide_what_runs_where(master_factory, worker_factory):
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler, AnyBranchScheduler, ChangeFilter

        def newest_first(builder, requests):
            return max(requests, key=lambda r: r.id)

        def w2_when_both_are_free(builder, workers, request):
            return "w2" if sorted(workers) == ["w1", "w2"] else None

        pipeline = Pipeline(
            workers=[Worker("w1", secret="s", max_builds=1), Worker("w2", secret="s")],
            schedulers=[
                AnyBranchScheduler("cold", builders=["ordered"], change_filter=ChangeFilter(branch="cold")),
                AnyBranchScheduler("hot", builders=["ordered"], change_filter=ChangeFilter(branch="hot"),
                                   priority=10),
                ForceScheduler("force", builders=["lifo", "picky", "plain", "a", "b"]),
            ],
            builders=[
                Builder("ordered", workers=["w1"], collapse_requests=False, steps=[Shell("sleep 0.2")]),
                Builder("lifo", workers=["w1"], collapse_requests=False, next_build=newest_first,
                        steps=[Shell("sleep 0.2")]),
                Builder("picky", workers=["w1", "w2"], next_worker=w2_when_both_are_free, steps=[Shell("true")]),
                Builder("plain", workers=["w1", "w2"], steps=[Shell("true")]),
                Builder("a", workers=["w1"], steps=[Shell("sleep 0.5")]),
                Builder("b", workers=["w1"], steps=[Shell("sleep 0.5")]),
            ],
        )
    """)
    client = master.client
    # Given requests queued while no worker can take them
    for branch, revision in (("cold", "c1"), ("cold", "c2"), ("hot", "h1")):
        client.sendchange(branch=branch, revision=revision)
    lifo = [client.force("lifo", revision=f"l{i}")[0] for i in range(3)]

    worker_factory(master, "w2", "s")

    # When w1 arrives, the higher priority goes first, then the oldest; next_build reverses lifo
    worker_factory(master, "w1", "s")
    ordered = sorted(finished_builds(client, 3, builder="ordered", timeout=30), key=lambda b: b["started_at"])
    assert [b["revision"] for b in ordered] == ["h1", "c1", "c2"]
    started = sorted(finished_builds(client, 3, builder="lifo", timeout=30), key=lambda b: b["started_at"])
    assert [b["request_id"] for b in started] == sorted(lifo, reverse=True)

    # With both workers connected and free, a builder takes the least busy, the first listed (w1),
    # unless its next_worker hook, offered both, chooses the other
    client.force("plain")
    (plain,) = finished_builds(client, 1, builder="plain")
    client.force("picky")
    (picky,) = finished_builds(client, 1, builder="picky")
    assert (plain["worker"], picky["worker"]) == ("w1", "w2")

    # max_builds=1: w1 never runs two builds at once, even of different builders
    client.force("a")
    client.force("b")
    first, second = sorted(
        [finished_builds(client, 1, builder=name)[0] for name in ("a", "b")], key=lambda b: b["started_at"]
    )
    assert second["started_at"] >= first["finished_at"] - 0.01


def test_the_most_urgent_request_of_all_builders_runs_first_on_a_worker_they_share(master_factory, worker_factory):
    # Buildbot users find priorities ignored across builders (#4592, #6285)
    master = master_factory("""
        from flowbot import Pipeline, Worker, Builder, Shell, ForceScheduler
        pipeline = Pipeline(
            workers=[Worker("w1", secret="s", max_builds=1)],
            schedulers=[
                ForceScheduler("routine", builders=["a", "b"]),
                ForceScheduler("urgent", builders=["hotfix"], priority=100),
            ],
            builders=[
                Builder(name, workers=["w1"], collapse_requests=False, steps=[Shell("sleep 0.2")])
                for name in ("a", "b", "hotfix")
            ],
        )
    """)
    # Given requests queued while the one worker is away: a, b, a again, then a hotfix
    for builder, revision in (("a", "a1"), ("b", "b1"), ("a", "a2"), ("hotfix", "h1")):
        master.client.force(builder, revision=revision)

    # When the worker comes
    worker_factory(master, "w1", "s")

    # Then the hotfix runs first, then the others oldest first, whatever their builder
    builds = sorted(finished_builds(master.client, 4, timeout=30), key=lambda b: b["started_at"])
    assert [b["revision"] for b in builds] == ["h1", "a1", "b1", "a2"]
