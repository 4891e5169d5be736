"""Tables of the HTTP gateway: uploaded files, OpenAI batch details and rejected input lines.

Uploaded files live in the SQL store, in 1 MiB chunks: the store is already the shared record every gateway
replica and worker reaches, it survives restarts, and chunking keeps memory flat on upload and download
(no row larger than a chunk is ever read). Output and error files are not stored at all: they are generated
on download from the jobs' rows, which hold the answers anyway.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, LargeBinary, Text
from sqlmodel import Field, SQLModel

from shared.timeutil import UTCDateTime

FILE_CHUNK_BYTES = 1024 * 1024


def _utc(nullable: bool = False) -> Column[datetime]:
    return Column(UTCDateTime(), nullable=nullable)


class StoredFile(SQLModel, table=True):
    __tablename__ = "files"

    id: str = Field(primary_key=True, max_length=48)
    created_at: datetime = Field(sa_column=_utc())
    api_key_id: str | None = Field(default=None, max_length=40, index=True)
    purpose: str = Field(max_length=32)
    filename: str = Field(max_length=512)
    bytes: int = 0
    chunks: int = 0
    status: str = Field(default="processed", max_length=16)
    expires_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))


class FileChunk(SQLModel, table=True):
    __tablename__ = "file_chunks"

    file_id: str = Field(primary_key=True, max_length=48, foreign_key="files.id")
    seq: int = Field(primary_key=True)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class OpenAIBatch(SQLModel, table=True):
    """What an OpenAI `POST /v1/batches` adds to a routeyard batch (same id)."""

    __tablename__ = "openai_batches"

    batch_id: str = Field(primary_key=True, max_length=40)
    input_file_id: str = Field(max_length=48, index=True)
    endpoint: str = Field(max_length=64)
    completion_window: str = Field(max_length=16)


class LineRejection(SQLModel, table=True):
    """An input line refused at submission; it goes to the batch's error file with its line number."""

    __tablename__ = "line_rejections"

    batch_id: str = Field(primary_key=True, max_length=40)
    line_no: int = Field(primary_key=True)
    custom_id: str | None = Field(default=None, max_length=256)
    code: str = Field(max_length=32)
    message: str = Field(sa_column=Column(Text, nullable=False))
