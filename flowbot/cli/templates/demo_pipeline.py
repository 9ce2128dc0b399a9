# The pipeline `flowbot demo` runs: a poller on the demo's git repository, and two builders that
# check each new commit out (Git) and test it (unittest) or compile it, on two workers.
import sys
from pathlib import Path

from flowbot import AnyBranchScheduler, Builder, ForceScheduler, Git, GitPoller, Pipeline, Shell, Worker

# The demo makes this repository next to the master's directory.
REPO = str(Path(__file__).resolve().parent.parent / "project")

pipeline = Pipeline(
    workers=[Worker("w1", secret="demo-secret-1"), Worker("w2", secret="demo-secret-2")],
    sources=[GitPoller(REPO, branches=True, poll_interval=1)],
    schedulers=[
        AnyBranchScheduler("on-change", builders=["unit", "lint"]),
        ForceScheduler("force", builders=["unit", "lint"]),
    ],
    builders=[
        Builder(
            "unit",
            workers=["w1", "w2"],
            collapse_requests=False,  # build every commit, so the demo shows which one broke the tests
            steps=[
                Git(REPO, mode="full"),
                Shell([sys.executable, "-m", "unittest", "-v"], name="test"),
            ],
        ),
        Builder(
            "lint",
            workers=["w1", "w2"],
            collapse_requests=False,
            steps=[
                Git(REPO, mode="incremental"),
                Shell([sys.executable, "-m", "compileall", "-q", "."], name="compile"),
            ],
        ),
    ],
)
