"""Several repositories in one pipeline: two real repositories polled by a real master, built
together by a real worker, each ``Git`` step checking out its own codebase's revision.
"""

from __future__ import annotations

from ..gitrepos import GitRepo
from ..support import finished_builds, step_log, wait_for

PIPELINE = """\
from flowbot import AnyBranchScheduler, Builder, Git, GitPoller, Pipeline, Shell, Worker

APP, LIB = {app!r}, {lib!r}
pipeline = Pipeline(
    workers=[Worker("w1", secret="s1")],
    sources=[
        GitPoller(APP, branches=["main"], poll_interval=0.3, name="app", codebase="app"),
        GitPoller(LIB, branches=["main"], poll_interval=0.3, name="lib", codebase="lib"),
    ],
    schedulers=[AnyBranchScheduler("both", builders=["unit"], codebases={{
        "app": {{"repository": APP, "branch": "main"}},
        "lib": {{"repository": LIB, "branch": "main"}},
    }})],
    builders=[Builder("unit", workers=["w1"], collapse_requests=False, steps=[
        Git(APP, codebase="app", workdir="app"),
        Git(LIB, codebase="lib", workdir="lib"),
        Shell("cat app/which.txt lib/which.txt", workdir=".", name="show"),
    ])],
)
"""

#: The same two pollers without codebases, feeding a builder that checks out the application only.
UNNAMED = """\
from flowbot import AnyBranchScheduler, Builder, Git, GitPoller, Pipeline, Worker

pipeline = Pipeline(
    workers=[Worker("w1", secret="s1")],
    sources=[GitPoller({app!r}, branches=["main"], poll_interval=0.3, name="app"),
             GitPoller({lib!r}, branches=["main"], poll_interval=0.3, name="lib")],
    schedulers=[AnyBranchScheduler("both", builders=["unit"])],
    builders=[Builder("unit", workers=["w1"], steps=[Git({app!r})])],
)
"""


def repositories(tmp_path) -> tuple[GitRepo, GitRepo]:
    app, lib = GitRepo(tmp_path / "app"), GitRepo(tmp_path / "lib")
    app.commit("App 1", {"which.txt": "app 1\n"})
    lib.commit("Lib 1", {"which.txt": "lib 1\n"})
    return app, lib


def test_two_pollers_feed_one_builder_and_each_git_step_checks_out_its_own_repository(
    tmp_path, master_factory, worker_factory
):
    # Given an application and its library, polled as two codebases that one builder checks out
    app, lib = repositories(tmp_path)
    master = master_factory(PIPELINE.format(app=app.url, lib=lib.url))
    worker_factory(master, "w1", "s1")
    wait_for(lambda: master.log().count("first poll of") >= 2, 30, "both pollers' first polls")

    # When the library gets a commit, and then the application
    lib_2 = lib.commit("Lib 2", {"which.txt": "lib 2\n"})
    first = finished_builds(master.client, 1)[0]
    app_2 = app.commit("App 2", {"which.txt": "app 2\n"})
    second = finished_builds(master.client, 2)[1]

    # Then each build checked out the new commit of one and the head of the other, each from its own repository
    for build, shown, got in [
        (first, "app 1\nlib 2", {"app": app.head("HEAD~1"), "lib": lib_2}),
        (second, "app 2\nlib 2", {"app": app_2, "lib": lib_2}),
    ]:
        assert build["result"] == "SUCCESS"
        assert shown in step_log(master.client, build["id"], 2)
        details = master.client.request("GET", f"/api/builds/{build['id']}")
        assert details["properties"]["got_revision"] == [got, "Git Step"]
    assert f"checking out {lib_2} of {lib.url}" in step_log(master.client, first["id"], 1)
    assert f"checking out the head of main of {app.url}" in step_log(master.client, first["id"], 0)
    assert f"checking out {app_2} of {app.url}" in step_log(master.client, second["id"], 0)


def test_without_codebases_the_git_step_says_why_it_cannot_find_the_other_repositorys_commit(
    tmp_path, master_factory, worker_factory
):
    # Given two pollers without codebases feeding a builder that checks out the application
    app, lib = repositories(tmp_path)
    master = master_factory(UNNAMED.format(app=app.url, lib=lib.url))
    worker_factory(master, "w1", "s1")
    wait_for(lambda: master.log().count("first poll of") >= 2, 30, "both pollers' first polls")

    # When the library gets a commit
    commit = lib.commit("Lib 2")
    (build,) = finished_builds(master.client, 1)

    # Then the application's Git step fails, and its log says what went wrong and what to do
    assert build["result"] == "FAILURE"
    log = step_log(master.client, build["id"], 0)
    assert f"the build's revision {commit} of codebase '' comes from {lib.url}, not {app.url}" in log
    assert "give each its own codebase=" in log
    assert f"revision {commit} is not in {app.url}" in log
