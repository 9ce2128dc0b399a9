"""Faults tried many times on a running master: the table of what survived, what was lost and what ran twice.

Each trial starts a real master and three real workers (see ``tests/faults/rig.py``), forces
builds before and while the fault lasts, injects the fault at a random moment mid-build, and
checks, once every accepted request has been dealt with, that each was built exactly once, that
no step ran twice and that every log is whole or says what it lacks (``tests/faults/trial.py``).
The tests in ``tests/faults/`` run the same trials, one at a time.

PostgreSQL faults run on a server of the benchmark's own (``initdb`` in a temporary directory, as
the ``postgres`` user under root); the full filesystem is a tmpfs it mounts (root).

    python benchmarks/faults.py                          # every fault, 20 trials each
    python benchmarks/faults.py worker-kill master-kill -n 5 --db sqlite
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faults.catalogue import FAULTS  # noqa: E402
from tests.faults.trial import Resources, Tally, run_trial, table  # noqa: E402
from tests.outages import PostgresServer, SmallDisk, can_mount  # noqa: E402


@contextlib.contextmanager
def _resources(needs_postgres: bool) -> Iterator[Resources]:
    """A PostgreSQL server of the benchmark's own (when a fault needs one) and tmpfs mounts, removed at the end."""
    disks: list[SmallDisk] = []

    def mount(size: int) -> SmallDisk:
        problem = can_mount()
        if problem:
            raise RuntimeError(problem)
        disks.append(SmallDisk(size))
        return disks[-1]

    server = PostgresServer.create() if needs_postgres else None
    try:
        if server is not None:
            server.start()
        yield Resources(postgres=server, mount=mount)
    finally:
        for disk in disks:
            disk.unmount()
        if server is not None:
            server.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("faults", nargs="*", choices=[[], *FAULTS], help="faults to try (default: all)")
    parser.add_argument("-n", "--trials", type=int, default=20, help="trials of each fault on each database")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], action="append", help="only these databases")
    parser.add_argument("--seed", type=int, default=0, help="the first trial's seed (the next ones follow)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every trial's outcome")
    args = parser.parse_args()
    names = args.faults or list(FAULTS)
    plan = [(name, db) for name in names for db in FAULTS[name].databases if not args.db or db in args.db]
    tallies = []
    started = time.monotonic()
    with _resources(any(db == "postgresql" for _, db in plan)) as resources:
        for name, db in plan:
            tally = Tally(FAULTS[name].name, db)
            tallies.append(tally)
            for trial in range(args.trials):
                root = Path(tempfile.mkdtemp(prefix="flowbot-fault-"))
                try:
                    outcome = run_trial(FAULTS[name], db, root, resources, seed=args.seed + trial)
                finally:
                    shutil.rmtree(root, ignore_errors=True)
                tally.outcomes.append(outcome)
                if args.verbose or not outcome.clean:
                    print(f"{name} on {db}, trial {trial + 1}: {outcome}", file=sys.stderr, flush=True)
            print(table([tally]).splitlines()[-1], file=sys.stderr, flush=True)
    print(table(tallies))
    print(f"\n{sum(len(t.outcomes) for t in tallies)} trials in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
