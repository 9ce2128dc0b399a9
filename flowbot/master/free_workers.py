"""The workers each builder could start a build on, least busy first, kept as builds start and end.

A dispatch pass asks "which free worker of this builder is the least busy?" once per build it
starts; scanning every worker of the builder (and, for each, every running build) made a pass
that starts k builds on W workers cost about W * k^2. Here each builder has a heap of its workers
keyed by (builds running, place in the builder's list), so the answer costs O(log W).

An entry goes stale when its worker is touched (a build starts or ends on it, it connects, it is
unpaused): the worker is pushed again, with its new load, into the heap of every builder that
lists it, and the old entries are dropped as they come up. Whether a worker takes a build now
(connected, not paused or leaving, below its ``max_builds``) is asked of the caller when its entry
comes up; one that does not is dropped from that builder's heap until it is touched again. Stale
entries never make a heap more than about twice the size of its builder's list.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence

#: An entry of a builder's heap: (builds running on the worker, its place in the builder's list,
#: the worker's stamp when pushed, the worker's name).
_Entry = tuple[int, int, int, str]


class FreeWorkers:
    """Per builder, its workers ordered by load; see the module's docstring.

    Args:
        load: how many builds the worker named runs now.
    """

    def __init__(self, load: Callable[[str], int]) -> None:
        self._load = load
        self._rosters: dict[str, Sequence[str]] = {}  # builder -> its workers, as indexed
        self._sizes: dict[str, int] = {}  # builder -> the length of its roster when indexed
        self._heaps: dict[str, list[_Entry]] = {}
        self._places: dict[str, dict[str, int]] = {}  # worker -> {builder: its place in the builder's list}
        self._stamps: dict[str, int] = {}

    def clear(self) -> None:
        """Forget everything (the pipeline changed, or workers held aside may try again)."""
        self._rosters.clear()
        self._sizes.clear()
        self._heaps.clear()
        self._places.clear()

    def touch(self, worker: str) -> None:
        """``worker``'s load or its ability to take builds may have changed: index it again."""
        places = self._places.get(worker)
        if not places:  # in no heap: nothing to make stale (an instance started on demand, say)
            self._stamps.pop(worker, None)
            return
        stamp = self._stamps[worker] = self._stamps.get(worker, 0) + 1
        load = self._load(worker)
        for builder, place in places.items():
            heap = self._heaps[builder]
            heapq.heappush(heap, (load, place, stamp, worker))
            if len(heap) > 2 * self._sizes[builder] + 16:
                self._compact(builder)

    def least_busy(self, builder: str, workers: Sequence[str], takes: Callable[[str], bool]) -> Iterator[str]:
        """The workers of ``builder`` (its list: ``workers``) that ``takes`` says take a build now,
        least busy first, ties in the list's order; those it refuses are dropped until touched.

        The iterator must be closed (or run to its end) before the index is touched: the entries
        it went past are put back then.
        """
        if self._rosters.get(builder) is not workers or self._sizes[builder] != len(workers):
            self._index(builder, workers)
        heap, stamps = self._heaps[builder], self._stamps
        passed: list[_Entry] = []
        try:
            while heap:
                entry = heapq.heappop(heap)
                worker = entry[3]
                if entry[2] != stamps.get(worker) or not takes(worker):
                    continue
                passed.append(entry)
                yield worker
        finally:
            for entry in passed:
                heapq.heappush(heap, entry)

    def _index(self, builder: str, workers: Sequence[str]) -> None:
        old = self._rosters.get(builder)
        if old is not None:
            for worker in old:
                self._places.get(worker, {}).pop(builder, None)
        self._rosters[builder], self._sizes[builder] = workers, len(workers)
        stamps, heap = self._stamps, []
        for place, worker in enumerate(workers):
            places = self._places.setdefault(worker, {})
            if builder in places:
                continue  # named twice: its first place counts
            places[builder] = place
            stamp = stamps.setdefault(worker, 0)
            heap.append((self._load(worker), place, stamp, worker))
        heapq.heapify(heap)
        self._heaps[builder] = heap

    def _compact(self, builder: str) -> None:
        stamps = self._stamps
        heap = [entry for entry in self._heaps[builder] if entry[2] == stamps.get(entry[3])]
        heapq.heapify(heap)
        self._heaps[builder] = heap
