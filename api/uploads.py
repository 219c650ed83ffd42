"""Receiving an upload: a multipart/form-data body read as it streams, its one `file` part
written to a local file and hashed on the way, its type sniffed from its first bytes, and
refused (413, 415) the moment it goes wrong. Nothing is held whole in memory, and a
refused or broken upload leaves no file behind."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from reelflow.errors import AssetTooLarge, UnsupportedMediaType
from workflows.assets.intake import SNIFF_BYTES, Media, Upload, sniff, upload_folder

FIELD = b"file"
#: What the multipart framing (and a small field or two) may add to the file's bytes.
SLACK = 64 * 1024
#: Bytes gathered before one write to disk (off the event loop).
WRITE_AT = 1 << 20

#: The request body as OpenAPI describes it (the route reads the stream itself).
BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "an image (png, jpeg, webp, gif) or audio (wav,"
                            " mp3, ogg, flac, m4a, aac) file; its type is read from its bytes",
                        }
                    },
                }
            }
        },
    }
}


class _FilePart:
    """The parser's callbacks: the `file` part's bytes gathered for the next flush, the
    other parts' only counted."""

    def __init__(self) -> None:
        self.header_field, self.header_value = b"", b""
        self.headers: dict[bytes, bytes] = {}
        self.inside = False  # in the file part's data
        self.parts = 0  # file parts seen
        self.ended = False
        self.pending: list[bytes] = []

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: self._add("header_field", d[s:e]),
            "on_header_value": lambda d, s, e: self._add("header_value", d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _add(self, name: str, data: bytes) -> None:
        setattr(self, name, getattr(self, name) + data)

    def _begin(self) -> None:
        self.headers = {}

    def _header_end(self) -> None:
        self.headers[self.header_field.strip().lower()] = self.header_value.strip()
        self.header_field, self.header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.inside = options.get(b"name") == FIELD
        self.parts += self.inside

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self.inside and self.parts == 1:
            self.pending.append(bytes(data[start:end]))

    def _end(self) -> None:
        if self.inside:
            self.ended = True
        self.inside = False


class _Sink:
    """The local file the file part goes to: its size, its sha256, its sniffed media."""

    def __init__(self, fh: BinaryIO, limit: int) -> None:
        self.fh, self.limit = fh, limit
        self.size = 0
        self.digest = hashlib.sha256()
        self.head = b""
        self.media: Media | None = None
        self.buffered: list[bytes] = []
        self.buffered_size = 0

    async def take(self, chunks: list[bytes], *, last: bool) -> None:
        for chunk in chunks:
            self.size += len(chunk)
            if len(self.head) < SNIFF_BYTES:
                self.head += chunk[: SNIFF_BYTES - len(self.head)]
            self.buffered.append(chunk)
            self.buffered_size += len(chunk)
        chunks.clear()
        if self.size > self.limit:
            raise AssetTooLarge(f"uploads are limited to {self.limit} bytes (ASSET_MAX_BYTES)")
        if self.media is None and (len(self.head) >= SNIFF_BYTES or last):
            self.media = sniff(self.head)  # refused here, before the rest arrives
        if self.buffered_size >= WRITE_AT or (last and self.buffered):
            data, self.buffered, self.buffered_size = b"".join(self.buffered), [], 0
            await asyncio.to_thread(self._write, data)

    def _write(self, data: bytes) -> None:
        self.fh.write(data)
        self.digest.update(data)


async def receive(request: Request, *, limit: int) -> Upload:
    """The request's `file` part, received whole into a local file (the caller consumes
    or deletes it). 415 for a body that is not multipart or a file of another type, 413
    past `limit`, 422 without a `file` part or with two, 400 for broken framing."""
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise UnsupportedMediaType("send the file as multipart/form-data, in a part named `file`")
    part = _FilePart()
    parser = MultipartParser(options[b"boundary"], callbacks=part.callbacks())
    path = upload_folder() / f".upload-{uuid.uuid4().hex}"
    kept = False
    try:
        with path.open("wb") as fh:
            sink, total = _Sink(fh, limit), 0
            async for chunk in request.stream():
                total += len(chunk)
                if total > limit + SLACK:
                    raise AssetTooLarge(f"uploads are limited to {limit} bytes (ASSET_MAX_BYTES)")
                _feed(parser, chunk)
                if part.parts > 1:
                    raise _missing("one file per upload")
                await sink.take(part.pending, last=part.ended)
            _feed(parser, None)
            if not part.ended or sink.media is None:
                raise _missing("Field required" if not part.parts else "the file part is cut short")
        kept = True
        return Upload(path, sink.size, sink.digest.hexdigest(), sink.media)
    finally:
        if not kept:
            Path(path).unlink(missing_ok=True)


def _feed(parser: MultipartParser, chunk: bytes | None) -> None:
    try:
        if chunk is None:
            parser.finalize()
        else:
            parser.write(chunk)
    except MultipartParseError:
        raise HTTPException(400, "the multipart body is malformed") from None


def _missing(message: str) -> RequestValidationError:
    error = {"loc": ("body", "file"), "msg": message, "type": "value_error"}
    return RequestValidationError([error])
