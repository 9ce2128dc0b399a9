"""What-if at scale: a year of the synthetic history of ``history.py`` replayed through a candidate pipeline.

The candidate is the pipeline that history stands for: 50 builders of five steps (checkout,
compile, test, lint, upload), ten ``AnyBranchScheduler`` each starting one group of five builders
(a change's group is its author's number modulo ten, as ``history.py`` makes them), every builder
on all 20 workers, each worker taking ``--max-builds`` builds at once. It times
``History.replay`` end to end (reading the history, simulating, making the frames) and reports
the comparison's totals.

    python benchmarks/history.py --db sqlite:////tmp/fbbench/history.sqlite   # once: makes the store
    python benchmarks/replay.py --db sqlite:////tmp/fbbench/history.sqlite
    python benchmarks/replay.py --db ... --until 2026-03-01      # a shorter stretch
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

from flowbot import AnyBranchScheduler, Builder, Pipeline, Shell, Worker
from flowbot.analysis import History

BUILDERS = 50
GROUP = 5
WORKERS = 20
STEPS = ("checkout", "compile", "test", "lint", "upload")


def candidate(max_builds: int) -> Pipeline:
    """The synthetic history's pipeline, with ``max_builds`` builds at once per worker."""
    workers = [f"worker-{n}" for n in range(WORKERS)]

    def group_of(number: int):
        return lambda change: int(change.author.removeprefix("dev")) % (BUILDERS // GROUP) == number

    return Pipeline(
        workers=[Worker(name, secret="s", max_builds=max_builds) for name in workers],
        schedulers=[
            AnyBranchScheduler(
                f"group-{g}",
                builders=[f"builder-{g * GROUP + i:02d}" for i in range(GROUP)],
                change_filter=group_of(g),
            )
            for g in range(BUILDERS // GROUP)
        ],
        builders=[
            Builder(f"builder-{n:02d}", workers=workers, steps=[Shell("make", name=step) for step in STEPS])
            for n in range(BUILDERS)
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help="SQLAlchemy URL of a store history.py made")
    parser.add_argument("--since", help="replay from (ISO date; default: the whole history)")
    parser.add_argument("--until", help="replay until (ISO date)")
    parser.add_argument("--max-builds", type=int, default=2, help="builds each worker takes at once (default 2)")
    args = parser.parse_args()
    with History(args.db) as history:
        began = time.perf_counter()
        replay = history.replay(candidate(args.max_builds), since=args.since, until=args.until)
        seconds = time.perf_counter() - began
    total = replay.compare().loc["(all)"]
    report = {
        "seconds": round(seconds, 1),
        "requests": len(replay.requests),
        "builds": len(replay.builds),
        "recorded builds": int(total[("builds", "recorded")]),
        "collapsed": int(total[("collapsed", "replayed")]),
        "queue p50 recorded": str(total[("queue p50", "recorded")]),
        "queue p50 replayed": str(total[("queue p50", "replayed")]),
        "queue p95 recorded": str(total[("queue p95", "recorded")]),
        "queue p95 replayed": str(total[("queue p95", "replayed")]),
        "peak memory MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
