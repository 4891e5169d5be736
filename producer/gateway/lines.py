"""Input lines from byte chunks — a spooled upload, a stored file's chunks — with flat memory.

`lines_from_chunks` is `producer.ingest.read_lines` for streams read a chunk at a time: a line may span
chunks, the last line may lack its newline, and a line longer than `MAX_LINE_BYTES` is reported as
`too_long` without ever being held whole. It is a plain (synchronous) iterator: the gateway drives it from a
worker thread, chunk by chunk (`Producer.submit_lines_threaded`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

from producer.ingest import MAX_LINE_BYTES, Line, LineError, parse_line
from shared.models import JobSpec, ProviderPreferences

READ_BYTES = 1024 * 1024


def read_chunks(f: BinaryIO, size: int = READ_BYTES) -> Iterator[bytes]:
    while True:
        chunk = f.read(size)
        if not chunk:
            return
        yield chunk


def _emit(line_no: int, buf: bytearray, overflow: int) -> Iterator[Line | LineError]:
    if overflow:
        yield LineError(line_no, "too_long", f"line is {overflow} bytes; the limit is {MAX_LINE_BYTES}")
        return
    parsed = parse_line(bytes(buf), line_no)
    if parsed is None:
        return
    yield parsed if isinstance(parsed, LineError) else Line(line_no, parsed)


def lines_from_chunks(chunks: Iterable[bytes], max_line: int = MAX_LINE_BYTES) -> Iterator[Line | LineError]:
    line_no = 0
    buf = bytearray()
    overflow = 0  # >0: the current line passed the limit; its length so far (its bytes are dropped)
    for chunk in chunks:
        start = 0
        view = memoryview(chunk)
        while True:
            nl = chunk.find(b"\n", start)
            end = len(chunk) if nl < 0 else nl + 1
            if overflow:
                overflow += end - start
            else:
                buf += view[start:end]
                if len(buf) > max_line:
                    overflow, buf = len(buf), bytearray()
            if nl < 0:
                break
            line_no += 1
            yield from _emit(line_no, buf, overflow)
            buf, overflow = bytearray(), 0
            start = end
    if buf or overflow:
        yield from _emit(line_no + 1, buf, overflow)


def with_defaults(
    lines: Iterator[Line | LineError], *, models: list[str] | None, provider: ProviderPreferences | None
) -> Iterator[Line | LineError]:
    """Batch-level routing preferences for the lines that name none of their own."""
    if not models and provider is None:
        yield from lines
        return
    for item in lines:
        if isinstance(item, Line):
            spec: JobSpec = item.spec
            update: dict[str, object] = {}
            if models and spec.models is None and spec.model is None:
                update["models"] = list(models)
            if provider is not None and spec.provider is None:
                update["provider"] = provider
            if update:
                item = Line(item.line_no, spec.model_copy(update=update))
        yield item
