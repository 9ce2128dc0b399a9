"""The build queue: pending requests per builder, highest priority first, then oldest first."""

from __future__ import annotations

import heapq

from ..records import BuildRequest


class BuildQueue:
    """Pending requests by builder. Cancelled requests are removed lazily, in O(1)."""

    def __init__(self) -> None:
        self._heaps: dict[str, list[tuple[int, float, int]]] = {}
        self._pending: dict[int, BuildRequest] = {}

    def add(self, request: BuildRequest) -> None:
        if request.id in self._pending:
            return
        self._pending[request.id] = request
        heap = self._heaps.setdefault(request.builder, [])
        heapq.heappush(heap, (-request.priority, request.submitted_at, request.id))

    def remove(self, request_id: int) -> BuildRequest | None:
        """Take a request out of the queue (it stays in its heap until it surfaces)."""
        return self._pending.pop(request_id, None)

    def builders(self) -> list[str]:
        """Builders with at least one pending request."""
        return [name for name, heap in self._heaps.items() if self._top(name) is not None]

    def pop(self, builder: str) -> BuildRequest | None:
        """The next request for ``builder``, or None."""
        request = self._top(builder)
        if request is not None:
            heapq.heappop(self._heaps[builder])
            del self._pending[request.id]
        return request

    def _top(self, builder: str) -> BuildRequest | None:
        heap = self._heaps.get(builder)
        while heap:
            request = self._pending.get(heap[0][2])
            if request is not None:
                return request
            heapq.heappop(heap)  # cancelled or already taken
        return None

    def requests(self, builder: str) -> list[BuildRequest]:
        """The pending requests of ``builder`` (in no particular order)."""
        return [r for r in self._pending.values() if r.builder == builder]

    def count(self, builder: str | None = None) -> int:
        if builder is None:
            return len(self._pending)
        return sum(1 for r in self._pending.values() if r.builder == builder)

    def __contains__(self, request_id: int) -> bool:
        return request_id in self._pending

    def __len__(self) -> int:
        return len(self._pending)
