"""Matrices in the API: a builder's cells of one buildset as one unit.

``GET /api/matrices?builder=&limit=`` lists the newest matrices (without their cells);
``GET /api/matrices/{id}`` answers one: its ``axes`` (``{name: [values]}`` in order), its
``result`` (the worst of its cells', once all are complete), ``counts`` of cells per result
(``PENDING`` for those waiting or running), and ``cells``: each cell's ``values``, ``result``,
``request_id`` and its latest build (``build_id``, ``number``), in the order they were requested.
A build that is a cell says its ``matrix_id`` (``GET /api/builds/{id}``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from .api import ApiHandler, path_id

if TYPE_CHECKING:
    from .services import WebServices


class MatricesHandler(ApiHandler):
    async def get(self) -> None:
        builder = self.get_query_argument("builder", None)
        if builder is not None and self.reads.pipeline().builder(builder) is None:
            found = await self.reads.store.matrices.query(builder=builder, limit=1)
            if not found:
                raise NotFound(f"no matrices of builder {builder!r}")
        matrices = await self.reads.store.matrices.query(builder=builder, limit=self.int_argument("limit", 50))
        self.reply({"matrices": [m.to_json(cells=False) for m in matrices]})


class MatrixHandler(ApiHandler):
    async def get(self, matrix_id: str) -> None:
        matrix = await self.reads.store.matrices.get(path_id(matrix_id, "matrix"))
        builder = self.reads.pipeline().builder(matrix.builder)
        answer = matrix.to_json()
        answer["fail_fast"] = bool(builder is not None and builder.matrix is not None and builder.matrix.fail_fast)
        self.reply(answer)


def matrix_routes(services: WebServices) -> list[tuple[str, type, dict[str, Any]]]:
    args = {"services": services}
    return [
        (r"/api/matrices", MatricesHandler, args),
        (r"/api/matrices/(\d+)", MatrixHandler, args),
    ]
