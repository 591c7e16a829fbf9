"""The exec protocol's JSON lines: requests in, replies out (docs/exec-protocol.md).

Pure functions, no I/O. Bytes travel as a JSON string when they are valid UTF-8 without
NUL, and as base64 in a "<name>_b64" member otherwise; the handler sees text as ``str``
and anything else as ``bytes``, and may answer with either.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

from .outcome import Outcome

Bytes = Union[str, bytes, bytearray, memoryview]

# A lone surrogate cannot be encoded as UTF-8, and NUL never travels as text.
_NOT_PLAIN_TEXT = re.compile("[\0\ud800-\udfff]")


class RequestError(Exception):
    """What ballast sent cannot be decoded: the child cannot go on."""


class ResultError(Exception):
    """What the handler returned cannot be sent: the message is retried."""


class Message:
    """A Kafka message, as ballast hands it to the handler."""

    __slots__ = ("topic", "partition", "offset", "timestamp", "attempt", "key", "value",
                 "headers", "traceparent", "tracestate")

    def __init__(self, topic: str, partition: int, offset: int, timestamp: Optional[int],
                 attempt: int, key: Optional[Union[str, bytes]],
                 value: Optional[Union[str, bytes]],
                 headers: Dict[str, Optional[Union[str, bytes]]],
                 traceparent: Optional[str] = None, tracestate: Optional[str] = None):
        self.topic = topic
        self.partition = partition
        self.offset = offset
        #: milliseconds since the epoch, or None
        self.timestamp = timestamp
        #: 1 on the first delivery to the handler, 2 on the first retry, ...
        self.attempt = attempt
        #: text as str, other bytes as bytes, None when absent
        self.key = key
        #: as key; None for a tombstone
        self.value = value
        #: header values as str, bytes or None; the last header of a name wins
        self.headers = headers
        #: the W3C trace context: the message's traceparent header when valid, or the
        #: one ballast started for it (tracing = on); None when it has none
        self.traceparent = traceparent
        #: the message's W3C tracestate, beside a traceparent; else None
        self.tracestate = tracestate if traceparent is not None else None

    def json(self) -> Any:
        """The value parsed as JSON (None for a tombstone)."""
        return None if self.value is None else json.loads(self.value)

    def __repr__(self) -> str:
        return "Message(%s[%d]@%d, attempt %d)" % (self.topic, self.partition, self.offset,
                                                 self.attempt)


class Request(NamedTuple):
    id: int
    batch: bool  # a batch request: one reply with results
    messages: List[Message]


def _b64decode(s: str, where: str) -> bytes:
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError("%s is not valid base64: %s" % (where, err)) from None


def _bytes_member(obj: Mapping[str, Any], name: str, where: str) -> Optional[Union[str, bytes]]:
    b64 = obj.get(name + "_b64")
    if isinstance(b64, str):
        return _b64decode(b64, "%s.%s_b64" % (where, name))
    text = obj.get(name)
    if text is None or isinstance(text, str):
        return text
    raise RequestError("%s.%s is not a string or null" % (where, name))


def _headers(obj: Mapping[str, Any], where: str) -> Dict[str, Optional[Union[str, bytes]]]:
    headers: Dict[str, Optional[Union[str, bytes]]] = {}
    for member, binary in (("headers", False), ("headers_b64", True)):
        h = obj.get(member)
        if h is None:
            continue
        if not isinstance(h, dict):
            raise RequestError("%s.%s is not an object" % (where, member))
        for name, v in h.items():
            if v is None:
                headers[name] = None
            elif not isinstance(v, str):
                raise RequestError("%s.%s.%s is not a string or null" % (where, member, name))
            else:
                headers[name] = _b64decode(v, "%s.%s.%s" % (where, member, name)) if binary else v
    return headers


def _int(obj: Mapping[str, Any], name: str, where: str, nullable: bool = False) -> Optional[int]:
    v = obj.get(name)
    if nullable and v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool):
        raise RequestError("%s.%s is not an integer" % (where, name))
    return v


def decode_message(obj: Any, where: str = "request") -> Message:
    """One message of a request (a message request, or a batch element)."""
    if not isinstance(obj, dict):
        raise RequestError("%s is not an object" % where)
    topic = obj.get("topic")
    return Message(topic=topic if isinstance(topic, str) else "",
                   partition=_int(obj, "partition", where),  # type: ignore[arg-type]
                   offset=_int(obj, "offset", where),  # type: ignore[arg-type]
                   timestamp=_int(obj, "timestamp", where, nullable=True),
                   attempt=_int(obj, "attempt", where),  # type: ignore[arg-type]
                   key=_bytes_member(obj, "key", where),
                   value=_bytes_member(obj, "value", where),
                   headers=_headers(obj, where),
                   traceparent=_text_member(obj, "traceparent"),
                   tracestate=_text_member(obj, "tracestate"))


def _text_member(obj: Mapping[str, Any], name: str) -> Optional[str]:
    """An optional text member (absent, or not text: None)."""
    v = obj.get(name)
    return v if isinstance(v, str) else None


def decode_request(line: Union[str, bytes]) -> Request:
    """Decodes a request line; raises RequestError."""
    try:
        obj = json.loads(line)
    except ValueError as err:
        raise RequestError("a request that is not JSON: %s" % err) from None
    if not isinstance(obj, dict):
        raise RequestError("a request that is not a JSON object")
    rid = _int(obj, "id", "request")
    batch = obj.get("batch")
    if isinstance(batch, list):
        if not batch:
            raise RequestError("batch request %d is empty" % rid)
        return Request(rid, True, [decode_message(m, "batch[%d]" % i) for i, m in enumerate(batch)])  # type: ignore[arg-type]
    return Request(rid, False, [decode_message(obj)])  # type: ignore[arg-type]


def _is_text(b: bytes) -> bool:
    if b"\0" in b:
        return False
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _wire_bytes(v: Any, where: str) -> Tuple[str, str]:
    """Bytes as they travel: (member suffix, JSON string)."""
    if isinstance(v, str):
        if not _NOT_PLAIN_TEXT.search(v):
            return "", v
        try:
            # surrogateescape gives back the bytes a str decoded that way came from.
            v = v.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise ResultError("%s holds a lone surrogate" % where) from None
    elif isinstance(v, (bytes, bytearray, memoryview)):
        v = bytes(v)
    else:
        raise ResultError("%s is not str, bytes or None" % where)
    if _is_text(v):
        return "", v.decode("utf-8")
    return "_b64", base64.b64encode(v).decode("ascii")


def _is_name(s: Any) -> bool:
    return isinstance(s, str) and s != "" and not _NOT_PLAIN_TEXT.search(s)


def _encode_record(rec: Any, where: str) -> Dict[str, Any]:
    if not isinstance(rec, Mapping):
        raise ResultError("%s is not a mapping" % where)
    out: Dict[str, Any] = {}
    topic = rec.get("topic")
    if topic is not None:
        if not _is_name(topic):
            raise ResultError("%s.topic is not a non-empty string" % where)
        out["topic"] = topic
    for name in ("key", "value"):
        v = rec.get(name)
        if v is not None:
            suffix, wire = _wire_bytes(v, "%s.%s" % (where, name))
            out[name + suffix] = wire
    headers = rec.get("headers")
    if headers is not None:
        if not isinstance(headers, Mapping):
            raise ResultError("%s.headers is not a mapping" % where)
        text: Dict[str, Optional[str]] = {}
        binary: Dict[str, str] = {}
        for name, v in headers.items():
            if not _is_name(name):
                raise ResultError("%s.headers: a header name that is not text" % where)
            if v is None:
                text[name] = None
                continue
            suffix, wire = _wire_bytes(v, "%s.headers.%s" % (where, name))
            (binary if suffix else text)[name] = wire
        if text:
            out["headers"] = text
        if binary:
            out["headers_b64"] = binary
    return out


def error_text(err: Any) -> str:
    """Text fit for an error member: no NUL (which JSON parsers refuse), no lone surrogate."""
    if isinstance(err, BaseException):
        s = str(err) or type(err).__name__
    else:
        s = str(err)
    if _NOT_PLAIN_TEXT.search(s):
        s = s.encode("utf-8", "replace").decode("utf-8").replace("\0", "\ufffd")
    return s


def encode_result(outcome: Outcome) -> Dict[str, Any]:
    """The JSON object of one result: {status, error?, emit?}; raises ResultError."""
    out: Dict[str, Any] = {"status": outcome.status}
    if outcome.error is not None:
        out["error"] = error_text(outcome.error)
    if outcome.emit:
        out["emit"] = [_encode_record(r, "emit[%d]" % i) for i, r in enumerate(outcome.emit)]
    return out


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def encode_reply(rid: int, results: List[Dict[str, Any]], batch: bool) -> str:
    """A reply line (without its newline): a batch's results, or a message's one result."""
    if batch:
        return _dumps({"id": rid, "results": results})
    return _dumps(dict({"id": rid}, **results[0]))


def encode_hello(max_inflight: int, sdk: str) -> str:
    """The hello line a version 2 child writes first."""
    return _dumps({"hello": {"protocol": 2, "max_inflight": max_inflight, "sdk": sdk}})
