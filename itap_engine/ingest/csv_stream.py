"""One bounded pass over a CSV byte stream: a file, a gzip file, a FIFO, a pipe or stdin.

Why it is built this way:

* **Open once, read once.** A pipe (``itap ingest -``, ``itap ingest <(cat f.csv)``,
  a FIFO) can be read only once, so nothing reopens the input: gzip is told by its
  magic bytes and the encoding by its BOM from a buffered first block of the same
  stream, and the planner's look at the header and at the first chunk's lines
  (long-format signal names) is served from lines buffered here and replayed to the
  reader.
* **Bounded.** The stream is read in blocks of :data:`BLOCK` bytes and split into
  lines without a terminator. A line longer than ``max_line_bytes`` is never held
  whole: it becomes an :class:`Oversize` (its first bytes, its length and its sha256,
  hashed as it streams past), which the reader quarantines.
* **Line endings.** LF and CRLF lines are read as they are (a CRLF line keeps its
  trailing CR, which the parser ignores). A file whose first line ends with a bare CR
  (old Mac) is read with CR as the terminator. In an LF file a bare CR inside a line
  is not a line break: the reader quarantines that one line.
* **Strict text.** UTF-8 is decoded strictly (a file in another encoding fails with
  one line naming ``--encoding``, instead of device ids silently merging through
  replacement characters); UTF-16 is recognised by its BOM; any other encoding named
  with ``--encoding`` (or ``[import] encoding``) is transcoded to UTF-8 as it streams.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import hashlib
import os
import stat
import sys
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from itap_engine.errors import ItapError
from itap_engine.safe_text import visible as one_line

__all__ = ["BLOCK", "STDIN", "CsvImportError", "CsvSource", "Line", "Oversize", "is_pipe_name"]

BLOCK = 256 * 1024
"""Bytes read from the input at a time."""
HEAD_BYTES = 1024
"""Bytes of an oversize line kept for the quarantine."""
STDIN = "-"


class CsvImportError(ItapError):
    """A CSV file cannot be imported as a whole; the message names the file (one line:
    text quoted from the file has its control characters escaped)."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


@dataclass(frozen=True)
class Oversize:
    """A line longer than the cap: what is kept of it instead of its text."""

    head: bytes
    length: int
    """Bytes, without the line terminator."""
    sha256: str


Line = bytes | Oversize


class _Prefixed:
    """A binary reader that returns ``prefix`` before the rest of ``raw``."""

    def __init__(self, prefix: bytes, raw: IO[bytes]) -> None:
        self.prefix = prefix
        self.raw = raw

    def read(self, size: int = -1) -> bytes:
        if self.prefix:
            if size is None or size < 0:
                data, self.prefix = self.prefix + self.raw.read(), b""
                return data
            data, self.prefix = self.prefix[:size], self.prefix[size:]
            return data
        return self.raw.read(size)

    def readable(self) -> bool:
        return True


class _Hashing:
    """An oversize line in progress: first bytes, length, running sha256."""

    def __init__(self, start: bytes) -> None:
        self.head = start[:HEAD_BYTES]
        self.length = 0
        self.hash = hashlib.sha256()
        self.add(start)

    def add(self, data: bytes) -> None:
        self.length += len(data)
        self.hash.update(data)
        if len(self.head) < HEAD_BYTES:
            self.head += data[: HEAD_BYTES - len(self.head)]

    def done(self) -> Oversize:
        return Oversize(self.head, self.length, self.hash.hexdigest())


def _oversize(line: bytes) -> Oversize:
    return Oversize(line[:HEAD_BYTES], len(line), hashlib.sha256(line).hexdigest())


def is_pipe_name(name: str) -> bool:
    """stdin or an anonymous pipe such as ``<(...)`` (``/dev/fd/N``): no file name to derive a device from."""
    return name == STDIN or name.startswith(("/dev/fd/", "/proc/self/fd/", "/dev/stdin"))


class CsvSource:
    """The lines of one input, read once.

    Args:
        name: a path, or ``-`` for stdin.
        encoding: the text encoding, or None for UTF-8 (UTF-16 if a BOM says so).
        max_line_bytes: longer lines come out as :class:`Oversize`.
    """

    def __init__(self, name: str | Path, *, encoding: str | None = None, max_line_bytes: int = 1024 * 1024) -> None:
        self.name = str(name)
        self.max_line_bytes = max_line_bytes
        self.lines_read = 0
        """Lines handed out or buffered so far (line 1 is the header)."""
        self.started = False
        """True once :meth:`chunks` has begun: the lines cannot be read again."""
        self._fh: IO[bytes] | None = None
        self._own = True
        self._open()
        self.regular = self._regular()
        self._encoding = self._check_encoding(encoding)
        self._decoder: codecs.IncrementalDecoder | None = None
        self._stream: IO[bytes] | _Prefixed | gzip.GzipFile = self._layers()
        self._buffered: deque[list[Line]] = deque()
        self._lines = self._line_lists()
        self.header: bytes | None = None
        first = next(self._lines, [])
        if first:
            line = first[0]
            if isinstance(line, Oversize):
                raise CsvImportError(
                    f"{self.name}: line 1 (the header) is {line.length} bytes long "
                    f"(max {self.max_line_bytes}); is this a CSV file?"
                )
            self.header = line.rstrip(b"\r")
            if len(first) > 1:
                self._buffered.append(first[1:])

    # ------------------------------------------------------------------ opening
    def _open(self) -> None:
        if self.name == STDIN:
            self._fh, self._own = sys.stdin.buffer, False
            return
        path = Path(self.name)
        try:
            self._fh = open(path, "rb")  # noqa: SIM115 (closed by close())
        except FileNotFoundError:
            raise CsvImportError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise CsvImportError(f"{path}: is a directory, not a CSV file") from None
        except OSError as error:
            raise CsvImportError(f"{path}: cannot read: {error.strerror or error}") from None

    def _regular(self) -> bool:
        try:
            return stat.S_ISREG(os.fstat(self._fh.fileno()).st_mode)  # type: ignore[union-attr]
        except (OSError, ValueError, AttributeError):
            return False

    def _check_encoding(self, encoding: str | None) -> str | None:
        if not encoding:
            return None
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            raise CsvImportError(
                f"unknown encoding {encoding!r}: give one Python knows, e.g. --encoding latin-1"
            ) from None
        return None if name == "utf-8" else name

    def _read_at_least(self, reader: IO[bytes] | gzip.GzipFile | _Prefixed, size: int) -> bytes:
        data = b""
        while len(data) < size:
            more = self._guard(reader.read, size - len(data))
            if not more:
                break
            data += more
        return data

    def _layers(self) -> _Prefixed:
        assert self._fh is not None
        magic = self._read_at_least(self._fh, 4)
        stream: IO[bytes] | _Prefixed | gzip.GzipFile = _Prefixed(magic, self._fh)
        if magic[:2] == b"\x1f\x8b":
            stream = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[arg-type]
        start = self._read_at_least(stream, 4)
        encoding = self._encoding
        if start.startswith(codecs.BOM_UTF8) and encoding in (None, "utf-8"):
            start = start[3:]
        elif encoding is None and start[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            encoding = "utf-16"
        if encoding is not None:
            self._decoder = codecs.getincrementaldecoder(encoding)("strict")
        self._encoding = encoding
        return _Prefixed(start, stream)  # type: ignore[arg-type]

    def _guard(self, read, *args):  # type: ignore[no-untyped-def]
        try:
            return read(*args)
        except (OSError, EOFError, zlib.error) as error:  # a truncated or corrupt .gz, an I/O error
            raise CsvImportError(f"{self.name}: unreadable after line {self.lines_read}: {error}") from None

    # ------------------------------------------------------------------ text blocks
    def _blocks(self) -> Iterator[bytes]:
        while True:
            block = self._guard(self._stream.read, BLOCK)
            if self._decoder is not None:
                try:
                    text = self._decoder.decode(block, final=not block)
                except UnicodeDecodeError as error:
                    raise CsvImportError(
                        f"{self.name}: not valid {self._encoding} after line {self.lines_read} "
                        f"({error.reason}); give the file's encoding with --encoding"
                    ) from None
                if text:
                    yield text.encode("utf-8")
                if not block:
                    return
                continue
            if not block:
                return
            yield block

    def _line_lists(self) -> Iterator[list[Line]]:
        """Lists of lines, without terminators; oversize lines as :class:`Oversize`."""
        cap = self.max_line_bytes
        blocks = self._blocks()
        pending = b""
        big: _Hashing | None = None
        cr_mode: bool | None = None
        for block in blocks:
            if cr_mode is None:
                pending += block
                lf, cr = pending.find(b"\n"), pending.find(b"\r")
                if lf < 0 and (cr < 0 or not pending[cr:].strip(b"\r")) and len(pending) <= cap:
                    continue  # no terminator seen yet: the line ending is not known
                # CR mode when the first line ends with CRs not followed by LF ("\r\r\n" is LF mode)
                cr_mode = cr >= 0 and (lf < 0 or pending[cr:lf].strip(b"\r") != b"")
                block, pending = pending, b""
            if cr_mode:
                block = block.replace(b"\r", b"\n")
            if big is not None:
                end = block.find(b"\n")
                if end < 0:
                    big.add(block)
                    continue
                big.add(block[:end])
                yield self._checked([big.done()])
                big = None
                block = block[end + 1 :]
            parts = block.split(b"\n")
            if pending:
                parts[0] = pending + parts[0]
            pending = parts.pop()
            if parts and not cr_mode and b"\r" in block:  # CRLF (or CRCRLF) endings: drop the CRs
                parts = [p.rstrip(b"\r") for p in parts]
            if parts:
                if max(map(len, parts)) > cap:
                    parts = [_oversize(p) if len(p) > cap else p for p in parts]  # type: ignore[misc]
                yield self._checked(parts)  # type: ignore[arg-type]
            if len(pending) > cap:
                big, pending = _Hashing(pending), b""
        pending = pending.rstrip(b"\r")  # the last line's CR ending, if any
        if big is not None:
            yield self._checked([big.done()])
        elif pending:
            yield self._checked([_oversize(pending) if len(pending) > cap else pending])

    def _checked(self, lines: list[Line]) -> list[Line]:
        """Count the lines; in UTF-8 mode, refuse bytes that are not UTF-8."""
        first = self.lines_read + 1
        self.lines_read += len(lines)
        if self._decoder is None:
            text = [line for line in lines if not isinstance(line, Oversize)]
            try:
                b"\n".join(text).decode("utf-8")  # type: ignore[arg-type]
            except UnicodeDecodeError:
                for k, line in enumerate(lines):
                    if isinstance(line, Oversize):
                        continue
                    try:
                        line.decode("utf-8")
                    except UnicodeDecodeError as error:
                        byte = line[error.start]
                        raise CsvImportError(
                            f"{self.name}: line {first + k} is not UTF-8 (byte 0x{byte:02x} at column "
                            f"{error.start + 1}); give the file's encoding with --encoding, e.g. --encoding latin-1"
                        ) from None
        return lines

    # ------------------------------------------------------------------ reading
    def _next_list(self, _want: int) -> list[Line]:
        if self._buffered:
            return self._buffered.popleft()
        return next(self._lines, [])

    def peek(self, count: int) -> list[Line]:
        """Up to ``count`` lines after the header, left in place for :meth:`chunks`."""
        have = sum(len(part) for part in self._buffered)
        while have < count:
            part = next(self._lines, [])
            if not part:
                break
            self._buffered.append(part)
            have += len(part)
        out: list[Line] = []
        for part in self._buffered:
            out.extend(part[: count - len(out)])
            if len(out) >= count:
                break
        return out

    def chunks(self, size: int) -> Iterator[list[Line]]:
        """The lines after the header, ``size`` at a time (the last chunk may be shorter)."""
        self.started = True
        chunk: list[Line] = []
        while True:
            part = self._next_list(size)
            if not part:
                break
            while part:
                room = size - len(chunk)
                chunk.extend(part[:room])
                part = part[room:]
                if len(chunk) >= size:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    @property
    def encoding(self) -> str | None:
        """The encoding in use when not UTF-8 (given, or UTF-16 from a BOM)."""
        return self._encoding

    def close(self) -> None:
        if self._fh is not None and self._own:
            with contextlib.suppress(OSError):
                self._fh.close()
        self._fh = None

    def __enter__(self) -> CsvSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
