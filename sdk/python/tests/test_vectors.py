"""The codec against the shared test vectors (sdk/vectors), which ballast's own codec and the
Node SDK check too; and the vectors against their own rules (README.md there)."""
import base64
import json

import pytest

from ballast_handler import emit, fail, ok, retry
from ballast_handler.codec import decode_request, encode_reply, encode_result
from conftest import VECTORS

VECTORS_VERSION = 1


def load(name):
    doc = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    assert doc["vectors_version"] == VECTORS_VERSION, "%s: a format this test does not know" % name
    assert doc["protocol"] == 2
    assert doc["vectors"]
    names = [v["name"] for v in doc["vectors"]]
    assert len(names) == len(set(names)), "%s: names must be unique" % name
    return doc["vectors"]


def spec_bytes(spec):
    """A vector's bytes: None, a string (its UTF-8 bytes) or {"b64": ...}."""
    if spec is None:
        return None
    if isinstance(spec, str):
        return spec.encode("utf-8")
    return base64.b64decode(spec["b64"])


def handler_bytes(spec):
    """As a handler would give them: a str stays str, {"b64"} becomes bytes."""
    return spec if spec is None or isinstance(spec, str) else spec_bytes(spec)


def check_bytes(got, spec, text_on_wire, what):
    if spec is None:
        assert got is None, what
        return
    assert isinstance(got, str) == text_on_wire, "%s: text exactly when it travels as text" % what
    assert (got.encode("utf-8") if isinstance(got, str) else got) == spec_bytes(spec), what


@pytest.mark.parametrize("v", load("requests.json"), ids=lambda v: v["name"])
def test_request_decodes_to_the_message(v):
    req = decode_request(json.dumps(v["request"]))
    specs = v.get("messages") or [v["message"]]
    wires = v["request"].get("batch") or [v["request"]]
    assert req.id == v["id"]
    assert req.batch == ("messages" in v)
    assert len(req.messages) == len(specs)
    for got, spec, wire in zip(req.messages, specs, wires):
        for f in ("topic", "partition", "offset", "timestamp", "attempt"):
            assert getattr(got, f) == spec[f], f
        check_bytes(got.key, spec["key"], "key" in wire, "key")
        check_bytes(got.value, spec["value"], "value" in wire, "value")
        want = dict((n, b) for n, b in spec["headers"])  # the last of a name wins
        assert sorted(got.headers) == sorted(want)
        for name, b in want.items():
            check_bytes(got.headers[name], b, name in wire["headers"], "header " + name)
        # The checked context travels at the top level, never lifted from the headers.
        assert got.traceparent == wire.get("traceparent")
        assert got.tracestate == (wire.get("tracestate") if "traceparent" in wire else None)


def outcome_of(result):
    records = [{"topic": r.get("topic"), "key": handler_bytes(r.get("key")),
                "value": handler_bytes(r.get("value")),
                "headers": {n: handler_bytes(b) for n, b in r.get("headers", [])}}
               for r in result.get("emit", [])]
    status = result["status"]
    if status == "ok":
        return emit(*records) if records else ok()
    return (retry if status == "retry" else fail)(result.get("error"))


@pytest.mark.parametrize("v", load("replies.json"), ids=lambda v: v["name"])
def test_result_encodes_to_the_reply(v):
    results = [encode_result(outcome_of(r)) for r in v.get("results") or [v["result"]]]
    line = encode_reply(v["id"], results, "results" in v)
    assert "\n" not in line
    assert json.loads(line) == v["reply"]


def requests_written(steps):
    return [s["ballast"]["id"] for s in steps if "ballast" in s]


@pytest.mark.parametrize("v", load("conversations.json"), ids=lambda v: v["name"])
def test_conversation_keeps_every_request(v):
    """Each request written is answered, retried (with or without an attempt) or split:
    exactly one of these, so the vector loses nothing and answers nothing twice."""
    e = v["expect"]
    assert e["outcome"] in ("accepted", "protocol_error", "timeout", "unavailable")
    fates = [int(i) for i in e["answered"]] + e["resend"] + e["split"]
    if e["attempt"] is not None:
        fates.append(e["attempt"])
    assert sorted(fates) == sorted(requests_written(v["steps"]))
    assert (e["bad_step"] is None) == (e["outcome"] in ("accepted", "timeout") or
                                       v["steps"][-1].get("eof") is True)
    if e["bad_step"] is not None:
        assert "child" in v["steps"][e["bad_step"]] or "child_raw" in v["steps"][e["bad_step"]]
