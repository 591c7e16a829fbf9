"""What a handler returns: ok, retry, fail, or records to emit."""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional, Tuple, TypedDict, Union

RecordBytes = Union[str, bytes, bytearray, memoryview]


class Record(TypedDict, total=False):
    """A record to produce as a message's effect; every member may be left out."""
    topic: str  # default: ballast's output.topic
    key: Optional[RecordBytes]
    value: Optional[RecordBytes]  # None or absent: a tombstone
    headers: Mapping[str, Optional[RecordBytes]]


class PermanentError(Exception):
    """Raised by a handler: the message fails permanently (DLQ). Any other exception retries."""


class Outcome(NamedTuple):
    """What happened to a message. Make one with ok(), retry(), fail() or emit()."""
    status: str
    error: Any = None
    emit: Tuple[Mapping[str, Any], ...] = ()


def ok() -> Outcome:
    """Done (returning None means the same)."""
    return Outcome("ok")


def retry(err: Any = None) -> Outcome:
    """A transient failure: retried with back-off, retry.max.attempts in all, then the DLQ."""
    return Outcome("retry", err)


def fail(err: Any = None) -> Outcome:
    """A permanent failure: the DLQ at once (a stop when there is none)."""
    return Outcome("fail", err)


def emit(*records: Mapping[str, Any]) -> Outcome:
    """Done, producing these records (at-least-once, or in the transaction with exactly-once)."""
    return Outcome("ok", None, tuple(records))


def from_value(v: Any) -> Outcome:
    """A handler's return value as an outcome: an Outcome as is, anything else is ok."""
    return v if isinstance(v, Outcome) else Outcome("ok")


def from_error(err: Exception) -> Outcome:
    """The outcome of an exception a handler raised."""
    return fail(err) if isinstance(err, PermanentError) else retry(err)
