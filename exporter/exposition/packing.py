"""Raw deflate pieces that concatenate into one gzip member, and the exposition slices that
are kept only in that form; below WHOLE_BELOW, one deflate of the whole body instead. Pure.

A piece is compressed on its own and ends byte-aligned (sync flush), so pieces made at
different times join into one valid deflate stream: an unchanged store's compressed bytes
are reused as they are. A store of 100,000 entries writes a 100 MB exposition; keeping it as
`Packed` slices (about 5 MB) instead of plain bytes is what keeps such a store's exporter
under 300 MB. A plain scrape inflates the slices one at a time as it writes them.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_FINAL_BLOCK = b"\x03\x00"  # an empty final deflate block (fixed Huffman, end of block only)
_ZEROS = bytes(1 << 20)
# Below this many plain bytes a body is deflated whole. Each spliced piece starts without the
# text before it and ends in a sync flush, which costs most where pieces are small: the spliced
# member is 2.1 times gzip -6 at 19 kB (10 entries), 1.13 at 137 kB, 1.03 at 270 kB and within
# 1% from 400 kB on, where one level-6 deflate of the whole body costs 3 ms of CPU per snapshot
# (10 ms per MB; the spliced path after one of four stores changed: 0.4 ms per MB).
# bench/gzip_sizes.py.
WHOLE_BELOW = 512 * 1024


def deflate_piece(chunk: bytes, level: int = 6) -> bytes:
    """`chunk` as raw deflate blocks that end byte-aligned and refer to nothing before them."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(chunk) + c.flush(zlib.Z_SYNC_FLUSH)


@dataclass(frozen=True, slots=True, eq=False)  # compared by identity: a cache key, not a value
class Packed:
    """A slice of exposition text kept only deflated, with what gzip's trailer needs."""

    piece: bytes
    size: int
    crc: int

    @classmethod
    def of(cls, plain: bytes) -> Packed:
        # Level 1: these slices are repetitive label text (20:1 either way), and a
        # 100,000-entry store packs 100 MB on its first scrape.
        return cls(deflate_piece(plain, 1), len(plain), zlib.crc32(plain))

    def plain(self) -> bytes:
        return zlib.decompressobj(-15).decompress(self.piece)


Chunk = bytes | Packed


def plain(chunk: Chunk) -> bytes:
    return chunk.plain() if isinstance(chunk, Packed) else chunk


def size(chunk: Chunk) -> int:
    return chunk.size if isinstance(chunk, Packed) else len(chunk)


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """crc32(a + b) from crc32(a), crc32(b) and len(b), without b: CRC-32 is affine in its
    input, so crc32(b, crc1) = crc32(b) ^ crc32(zeros, crc1) ^ crc32(zeros) for len2 zeros."""
    z1, z0 = crc1, 0
    while len2 > 0:
        n = min(len2, len(_ZEROS))
        view = memoryview(_ZEROS)[:n]
        z1, z0 = zlib.crc32(view, z1), zlib.crc32(view, z0)
        len2 -= n
    return crc2 ^ z1 ^ z0


class GzipCache:
    """One gzip member (what every client decodes, unlike concatenated members) assembled
    from per-chunk deflate pieces: plain chunks' pieces are cached by content, packed ones
    are their own piece."""

    def __init__(self) -> None:
        self._pieces: dict[bytes, bytes] = {}

    def pieces(self, chunks: Iterable[Chunk]) -> tuple[list[bytes], int, int]:
        """-> (deflate pieces, crc32, length) of the concatenated chunks."""
        fresh: dict[bytes, bytes] = {}
        out, crc, total = [], 0, 0
        for c in chunks:
            if isinstance(c, Packed):
                out.append(c.piece)
                crc = crc32_combine(crc, c.crc, c.size)
                total += c.size
                continue
            z = fresh.get(c) or self._pieces.get(c) or deflate_piece(c)
            fresh[c] = z
            out.append(z)
            crc = zlib.crc32(c, crc)
            total += len(c)
        self._pieces = fresh  # forget the pieces of chunks that are gone
        return out, crc, total


@dataclass(frozen=True, slots=True)
class Whole:
    """A body's leading chunks deflated as one gzip stream, with the compressor that continues
    it: each answer appends its own tail (the process metrics) to a copy, so the result is
    byte for byte one deflate of the whole body while the chunks are compressed once."""

    head: bytes
    compressor: zlib._Compress

    @classmethod
    def of(cls, chunks: Iterable[Chunk], level: int = 6) -> Whole:
        c = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: with gzip's header and trailer
        return cls(b"".join(c.compress(plain(chunk)) for chunk in chunks), c)

    def member(self, tail: bytes) -> list[bytes]:
        c = self.compressor.copy()
        return [self.head, c.compress(tail) + c.flush()]


def deflates_whole(chunks: Sequence[Chunk]) -> bool:
    """Whether a body of these chunks is deflated whole (small and nothing kept packed)."""
    return not any(isinstance(c, Packed) for c in chunks) and sum(map(size, chunks)) < WHOLE_BELOW


def gzip_member(pieces: Sequence[bytes], crc: int, total: int, tail: bytes) -> list[bytes]:
    """Header + pieces + `tail` (compressed fresh) + final block + trailer."""
    crc = zlib.crc32(tail, crc)
    total += len(tail)
    return [GZIP_HEADER, *pieces, deflate_piece(tail), _FINAL_BLOCK,
            struct.pack("<II", crc, total & 0xFFFFFFFF)]
