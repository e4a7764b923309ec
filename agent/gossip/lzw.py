"""LZW as used by memberlist's compressMsg: Go ``compress/lzw`` with LSB bit order and 8-bit literals.

Stream format (facts, so that both directions interoperate with Go peers):

* Codes are packed least-significant-bit first. Code 256 is *clear*, 257 is *end of stream*;
  the first dictionary code is 258.
* Codes start 9 bits wide. After each code the implied next table index ``hi`` advances;
  when it reaches ``1 << width`` the width grows by one bit, up to 12 bits.
* The writer starts every stream with a clear code, and emits a clear code (at 12 bits)
  as soon as ``hi`` would reach 4095, after which the table and width are reset.
* A reader that fills the table without seeing a clear code keeps decoding with a frozen
  table (no new entries) at 12 bits.
* The final partial byte is zero-padded; bytes after the end-of-stream code are ignored.

Both functions are pure; they do no I/O.
"""

from __future__ import annotations

__all__ = ["DEFAULT_LIMIT", "LimitExceeded", "compress", "decompress"]

DEFAULT_LIMIT = 40 * 1024 * 1024  # memberlist's maxDecompressedBytes; callers pass a tighter limit per input


class LimitExceeded(ValueError):
    """The output would grow past the caller's limit: decoding stopped at that point (an oversized input,
    told apart from a corrupt one)."""

_CLEAR = 256
_EOF = 257
_MIN_WIDTH = 9
_MAX_WIDTH = 12
_MAX_CODE = (1 << _MAX_WIDTH) - 1  # 4095
_LITERALS: tuple[bytes, ...] = tuple(bytes((i,)) for i in range(256))
_MASK64 = (1 << 64) - 1


def compress(data: bytes) -> bytes:
    """Compress ``data``; the result is byte-for-byte what Go's ``lzw.NewWriter(w, lzw.LSB, 8)`` writes."""
    out = bytearray()
    acc = _CLEAR  # the leading clear code, 9 bits wide
    nbits = _MIN_WIDTH
    width = _MIN_WIDTH
    hi = _EOF
    overflow = 1 << _MIN_WIDTH
    if data:
        table: dict[int, int] = {}
        get = table.get
        code = data[0]
        for x in memoryview(data)[1:]:
            key = (code << 8) | x
            nxt = get(key)
            if nxt is not None:
                code = nxt
                continue
            acc |= code << nbits
            nbits += width
            if nbits >= 64:
                out += (acc & _MASK64).to_bytes(8, "little")
                acc >>= 64
                nbits -= 64
            code = x
            hi += 1
            if hi == overflow:
                width += 1
                overflow <<= 1
            if hi == _MAX_CODE:
                acc |= _CLEAR << nbits
                nbits += width
                width = _MIN_WIDTH
                hi = _EOF
                overflow = 1 << _MIN_WIDTH
                table.clear()
                continue
            table[key] = hi
        # Close(): the pending code, then the end-of-stream code.
        acc |= code << nbits
        nbits += width
        hi += 1
        if hi == overflow:
            width += 1
            overflow <<= 1
        if hi == _MAX_CODE:
            acc |= _CLEAR << nbits
            nbits += width
            width = _MIN_WIDTH
    acc |= _EOF << nbits
    nbits += width
    out += acc.to_bytes((nbits + 7) >> 3, "little")
    return bytes(out)


def decompress(data: bytes, limit: int = DEFAULT_LIMIT) -> bytes:
    """Decompress a stream written by Go's ``lzw.NewWriter(w, lzw.LSB, 8)`` (or by :func:`compress`).

    Raises ``ValueError`` on an invalid code or a stream that ends before the end-of-stream code, and
    ``LimitExceeded`` (a ValueError) as soon as the output would pass ``limit`` bytes: nothing beyond the
    limit is produced, and the dictionary (each entry is a previous output plus one byte) never holds more
    than the output so far plus one byte per entry, so memory and time stay proportional to the limit.
    """
    if limit < 0:
        raise ValueError(f"lzw: negative output limit {limit}")
    src = bytes(data)
    pos = 0
    acc = 0
    nbits = 0
    width = _MIN_WIDTH
    mask = (1 << width) - 1
    hi = _EOF
    overflow = 1 << _MIN_WIDTH
    table: list[bytes] = [*_LITERALS, b"", b""]
    table.extend(b"" for _ in range(_MAX_CODE + 1 - len(table)))
    prev: bytes | None = None
    parts: list[bytes] = []
    append = parts.append
    total = 0
    while True:
        if nbits < width:
            chunk = src[pos : pos + 8]
            pos += 8
            acc |= int.from_bytes(chunk, "little") << nbits
            nbits += len(chunk) << 3
            if nbits < width:
                raise ValueError(f"lzw: truncated stream: end of input after {total} output bytes without EOF code")
        code = acc & mask
        acc >>= width
        nbits -= width
        if code < _CLEAR:
            s = _LITERALS[code]
        elif code == _CLEAR:
            width = _MIN_WIDTH
            mask = (1 << width) - 1
            hi = _EOF
            overflow = 1 << _MIN_WIDTH
            prev = None
            continue
        elif code == _EOF:
            break
        elif code < hi:
            s = table[code]
        elif code == hi:
            # Either the KwKwK case (the code being defined right now) or a frozen full table.
            s = table[code] if prev is None else prev + prev[:1]
        else:
            raise ValueError(f"lzw: invalid code {code} (next free code is {hi}) at output offset {total}")
        total += len(s)
        if total > limit:
            raise LimitExceeded(f"lzw: decompressed data is larger than limit ({limit} bytes)")
        append(s)
        if prev is not None:
            table[hi] = prev + s[:1]
        prev = s
        hi += 1
        if hi >= overflow:
            if width == _MAX_WIDTH:
                prev = None
                hi -= 1
            else:
                width += 1
                mask = (1 << width) - 1
                overflow <<= 1
    return b"".join(parts)
