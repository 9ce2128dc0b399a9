# The pipeline of this flowbot master. `flowbot checkconfig DIR` checks it; `flowbot start DIR` runs it.
#
# A pipeline is a graph: changes flow into schedulers, schedulers request builds from builders,
# builders run their steps on workers. Edit it as plain Python.
from flowbot import AnyBranchScheduler, Builder, ForceScheduler, Pipeline, Shell, Worker

pipeline = Pipeline(
    # Workers dial in to this master: flowbot-worker --master tcp://127.0.0.1:9989 --name w1 --secret change-me
    # Every message on the link is signed with the worker's secret; change these before going live.
    # Off loopback, also encrypt the link: `flowbot create-key DIR`, then curve_key="master.key_secret"
    # below and public_key="..." (from `flowbot-worker create-key`) for each worker.
    workers=[Worker("w1", secret="change-me"), Worker("w2", secret="other")],
    schedulers=[
        # Build every change on every branch (flowbot sendchange, webhooks, pollers).
        AnyBranchScheduler("on-change", builders=["unit", "lint"]),
        # Let people force builds: flowbot force unit
        ForceScheduler("force", builders=["unit", "lint"]),
    ],
    builders=[
        # Each step sees FLOWBOT_BRANCH, FLOWBOT_REVISION, FLOWBOT_BUILDER and FLOWBOT_BUILD_NUMBER.
        Builder(
            "unit",
            workers=["w1", "w2"],
            steps=[
                Shell("echo testing $FLOWBOT_REVISION", name="test"),
                Shell(["python3", "-c", "print('done')"], name="report"),
            ],
        ),
        # A failing step fails the build; halt_on_failure=True would also skip the steps after it.
        Builder("lint", workers=["w2"], steps=[Shell("exit 3", name="lint")]),
    ],
)
