"""How a log chunk's text is kept: compressed with Zstandard, or as text for chunks from before.

Logs are most of what a CI database holds, and they compress twenty times over; Buildbot
compresses its log chunks for the same reason. A chunk written now keeps its text in
``log_chunks.compressed`` (one Zstandard frame of its UTF-8) and an empty ``content``; a chunk
stored before compression (migration ``0013_log_compression``) keeps its text in ``content`` and no
``compressed``. Everything that reads a chunk goes through :func:`unpack`, so both read alike.
"""

from __future__ import annotations

import threading

import zstandard

#: Zstandard's level: its default, faster than zlib's fastest and smaller than zlib's default.
LEVEL = 3


#: One compressor per thread (a compressor is not to be shared by threads): making one for each
#: chunk costs ten times what compressing a small chunk does.
_local = threading.local()


def pack(text: str) -> bytes:
    """The text of a chunk as it is stored."""
    compressor = getattr(_local, "compressor", None)
    if compressor is None:
        compressor = _local.compressor = zstandard.ZstdCompressor(level=LEVEL)
    return compressor.compress(text.encode())


def unpack(content: str, compressed: bytes | None) -> str:
    """A stored chunk's text, from its two columns (``compressed`` may be any missing value, as a
    DataFrame of old chunks holds NaN)."""
    if not isinstance(compressed, (bytes, bytearray, memoryview)):
        return content
    return zstandard.decompress(bytes(compressed)).decode()
