"""``Pipeline.diff``: what changes between two pipelines, node by node and setting by setting."""

from __future__ import annotations

from flowbot import (
    AnyBranchScheduler,
    Builder,
    ChangeFilter,
    ForceScheduler,
    GitPoller,
    MasterLock,
    Pipeline,
    Shell,
    Worker,
)
from flowbot.pipeline_diff import Edit


def pipeline(
    command: str = "pytest",
    *,
    secret: str = "s",
    branch: str = "main",
    steps: tuple[str, ...] = ("test", "lint"),
    timer: float | None = None,
    more: bool = False,
    important=lambda change: True,
) -> Pipeline:
    commands = {"test": command, "lint": "ruff check", "docs": "make docs"}
    deploy = MasterLock("deploy")
    return Pipeline(
        workers=[Worker("w1", secret=secret), *([Worker("w2", secret="s")] if more else [])],
        sources=[GitPoller("https://example.org/repo.git", name="poller", branches=[branch])],
        schedulers=[
            AnyBranchScheduler(
                "on-push",
                builders=["unit"],
                change_filter=ChangeFilter(branch=branch),
                tree_stable_timer=timer,
                file_is_important=important,
            ),
            ForceScheduler("force", builders=["unit", *(["docs"] if more else [])]),
        ],
        builders=[
            Builder(
                "unit",
                workers=["w1"],
                steps=[Shell(commands[name], name=name, env={"CI": "1"}) for name in steps],
                locks=[deploy.access("counting")],
            ),
            *([Builder("docs", workers=["w1", "w2"], steps=[Shell("make docs")])] if more else []),
        ],
    )


def test_the_same_code_run_again_changes_nothing() -> None:
    # Lambdas, locks and filters are new objects each time, but do the same
    assert not pipeline().diff(pipeline())
    assert str(pipeline().diff(pipeline())) == "no changes"


def test_nodes_added_and_removed_are_listed_by_kind() -> None:
    changes = pipeline().diff(pipeline(more=True))
    assert changes.of("worker", Edit.ADDED) == ["w2"]
    assert changes.of("builder", Edit.ADDED) == ["docs"]
    assert changes.of("scheduler", Edit.CHANGED) == ["force"]
    back = pipeline(more=True).diff(pipeline())
    assert back.of("worker", Edit.REMOVED) == ["w2"] and back.of("builder", Edit.REMOVED) == ["docs"]


def test_a_changed_node_lists_each_setting_with_its_value_before_and_after() -> None:
    changes = pipeline().diff(pipeline("pytest -x", branch="dev", timer=30))
    by_node = {(c.kind, c.name): [(f.field, f.before, f.after) for f in c.fields] for c in changes}
    assert by_node == {
        ("source", "poller"): [("branches", "a lambda of wanted={'main'}", "a lambda of wanted={'dev'}")],
        ("scheduler", "on-push"): [
            ("change_filter", "ChangeFilter(branch='main')", "ChangeFilter(branch='dev')"),
            ("tree_stable_timer", "None", "30"),
        ],
        ("builder", "unit"): [("step 'test' command", "'pytest'", "'pytest -x'")],
    }


def test_steps_added_removed_or_moved_show_the_order_before_and_after() -> None:
    changes = pipeline().diff(pipeline(steps=("lint", "test", "docs")))
    (unit,) = [c for c in changes if c.name == "unit"]
    assert [(f.field, f.before, f.after) for f in unit.fields] == [("steps", "test -> lint", "lint -> test -> docs")]


def test_a_function_with_other_code_is_a_change_and_a_secret_is_never_shown() -> None:
    changes = pipeline().diff(pipeline(secret="new secret", important=lambda change: "src" in change.files))
    fields = {(c.name, f.field): (f.before, f.after) for c in changes for f in c.fields}
    assert fields == {
        ("w1", "secret"): ("(hidden)", "(hidden)"),
        ("on-push", "file_is_important"): ("a lambda", "a lambda"),
    }
    assert "new secret" not in str(changes) and "new secret" not in changes._repr_html_()


def test_the_diff_as_a_frame_has_a_row_per_setting_and_per_node() -> None:
    frame = pipeline().diff(pipeline("pytest -x", more=True)).to_frame()
    assert list(frame.columns) == ["kind", "name", "edit", "field", "before", "after"]
    assert frame[["kind", "name", "edit", "field"]].values.tolist() == [
        ["worker", "w2", "added", ""],
        ["scheduler", "force", "changed", "builders"],
        ["builder", "unit", "changed", "step 'test' command"],
        ["builder", "docs", "added", ""],
    ]
