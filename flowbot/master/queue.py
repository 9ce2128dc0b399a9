"""The build queue: pending requests per builder, highest priority first, then oldest first."""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable

from ..builder import source_key
from ..records import BuildRequest

#: Where a request stands in line: ``(-priority, submitted_at, id)``; the smallest goes first.
Place = tuple[int, float, int]


class BuildQueue:
    """Pending requests by builder. Removed requests leave their heap lazily, in O(1)."""

    def __init__(self) -> None:
        self._heaps: dict[str, list[Place]] = {}
        self._pending: dict[int, BuildRequest] = {}
        self._by_source: dict[tuple[str, Hashable], dict[int, None]] = {}
        self._sources: dict[int, tuple[str, Hashable]] = {}  # each pending request's key in _by_source

    def add(self, request: BuildRequest) -> None:
        if request.id in self._pending:
            return
        self._pending[request.id] = request
        heap = self._heaps.setdefault(request.builder, [])
        heapq.heappush(heap, (-request.priority, request.submitted_at, request.id))
        key = self._sources[request.id] = (request.builder, source_key(request))
        self._by_source.setdefault(key, {})[request.id] = None

    def remove(self, request_id: int) -> BuildRequest | None:
        """Take a request out of the queue (it stays in its heap until it surfaces)."""
        request = self._pending.pop(request_id, None)
        if request is not None:
            key = self._sources.pop(request_id)
            same = self._by_source[key]
            del same[request_id]
            if not same:
                del self._by_source[key]
        return request

    def heads(self, builders: Iterable[str] | None = None) -> list[tuple[Place, str]]:
        """Each builder with pending requests (of ``builders``, or all), with the place of its first in line."""
        names = self._heaps if builders is None else builders
        return [(place, name) for name in names if (place := self.head(name)) is not None]

    def head(self, builder: str) -> Place | None:
        """The place of the request ``builder`` would run next by priority and age."""
        heap = self._heaps.get(builder)
        while heap:
            if heap[0][2] in self._pending:
                return heap[0]
            heapq.heappop(heap)  # removed earlier
        return None

    def first(self, builder: str) -> BuildRequest | None:
        """The request ``builder`` would run next by priority and age."""
        place = self.head(builder)
        return self._pending[place[2]] if place is not None else None

    def pending(self, builder: str) -> list[BuildRequest]:
        """Every pending request of ``builder``, in the order they would run."""
        return [self._pending[i] for _, _, i in sorted(self._heaps.get(builder, ())) if i in self._pending]

    def same_source(self, request: BuildRequest) -> list[BuildRequest]:
        """Pending requests of the same builder with the same sources (revisions aside)."""
        ids = self._by_source.get((request.builder, source_key(request)), {})
        return [self._pending[i] for i in ids if i != request.id]

    def waiting(self, builder: str, first: int) -> tuple[int, list[BuildRequest]]:
        """How many requests ``builder`` has pending, and the ``first`` of them in the order they would run."""
        live = [place for place in self._heaps.get(builder, ()) if place[2] in self._pending]
        return len(live), [self._pending[i] for _, _, i in heapq.nsmallest(first, live)]

    def count(self, builder: str | None = None) -> int:
        if builder is None:
            return len(self._pending)
        return sum(1 for r in self._pending.values() if r.builder == builder)

    def __contains__(self, request_id: int) -> bool:
        return request_id in self._pending

    def get(self, request_id: int) -> BuildRequest | None:
        return self._pending.get(request_id)

    def __iter__(self):
        return iter(list(self._pending.values()))

    def __len__(self) -> int:
        return len(self._pending)
