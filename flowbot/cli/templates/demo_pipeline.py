# The pipeline `flowbot demo` runs: two builders on two workers, one of them strict about branches.
from flowbot import AnyBranchScheduler, Builder, ForceScheduler, Pipeline, Shell, Worker

pipeline = Pipeline(
    workers=[Worker("w1", secret="demo-secret-1"), Worker("w2", secret="demo-secret-2")],
    schedulers=[
        AnyBranchScheduler("on-change", builders=["unit", "lint"]),
        ForceScheduler("force", builders=["unit", "lint"]),
    ],
    builders=[
        Builder(
            "unit",
            workers=["w1", "w2"],
            steps=[
                Shell("echo testing $FLOWBOT_REVISION on $FLOWBOT_BRANCH", name="test"),
                Shell(["python", "-c", "import platform; print('done on', platform.node())"], name="report"),
            ],
        ),
        Builder(
            "lint",
            workers=["w1", "w2"],
            steps=[
                Shell(
                    'case "$FLOWBOT_BRANCH" in wip/*) echo "lint: wip branches must not land" >&2; exit 1;; '
                    'esac; echo "lint: clean"',
                    name="lint",
                    halt_on_failure=True,
                ),
                Shell("echo style checked", name="style"),
            ],
        ),
    ],
)
