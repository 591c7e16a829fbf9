"""What the shared vectors cannot say: bad requests, bad handler results, text that JSON
parsers refuse, and the message helpers."""
import base64
import re

import pytest

from ballast_handler import emit, fail, ok, retry
from ballast_handler.codec import RequestError, ResultError, decode_request, encode_result

REQ = ('{"id":3,"attempt":1,"topic":"t","partition":0,"offset":5,"timestamp":null,'
       '"key":null,"value":"{\\"a\\":1}","headers":{}}')


@pytest.mark.parametrize("line,why", [
    ("not json", "not JSON"),
    ("[1]", "not a JSON object"),
    ('{"attempt":1}', "request.id is not an integer"),
    ('{"id":true}', "request.id is not an integer"),
    ('{"id":1,"batch":[]}', "batch request 1 is empty"),
    ('{"id":1,"batch":[1]}', "batch[0] is not an object"),
    ('{"id":1,"attempt":1,"topic":"t","partition":"0","offset":1,"timestamp":1}',
     "partition is not an integer"),
    ('{"id":1,"attempt":1,"topic":"t","partition":0,"offset":1,"timestamp":1,"value":5}',
     "value is not a string or null"),
    ('{"id":1,"attempt":1,"topic":"t","partition":0,"offset":1,"timestamp":1,"value_b64":"!"}',
     "value_b64 is not valid base64"),
    ('{"id":1,"attempt":1,"topic":"t","partition":0,"offset":1,"timestamp":1,"headers":[]}',
     "headers is not an object"),
])
def test_bad_requests_are_refused(line, why):
    with pytest.raises(RequestError, match=re.escape(why)):
        decode_request(line)


def test_json_parses_text_or_bytes():
    msg = decode_request(REQ).messages[0]
    assert msg.json() == {"a": 1}
    assert msg.traceparent is None
    binary = REQ.replace('"value":"{\\"a\\":1}"',
                         '"value_b64":"%s"' % base64.b64encode(b"[1,2]").decode())
    assert decode_request(binary).messages[0].value == b"[1,2]"
    assert decode_request(binary).messages[0].json() == [1, 2]
    assert decode_request(REQ.replace('"value":"{\\"a\\":1}"', '"value":null')).messages[0].json() is None


def test_trace_context_comes_from_the_top_level_not_the_headers():
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    traced = decode_request(REQ.replace('"headers":{}', '"headers":{},"traceparent":"%s",'
                                        '"tracestate":"a=1"' % tp)).messages[0]
    assert traced.traceparent == tp
    assert traced.tracestate == "a=1"
    # A header ballast did not lift (it was malformed) stays only a header.
    raw = decode_request(REQ.replace('"headers":{}', '"headers":{"traceparent":"junk",'
                                     '"tracestate":"a=1"}')).messages[0]
    assert raw.traceparent is None
    assert raw.tracestate is None
    assert raw.headers["traceparent"] == "junk"


def test_offsets_beyond_2_to_the_53_stay_exact():
    msg = decode_request(REQ.replace('"offset":5', '"offset":9223372036854775807')).messages[0]
    assert msg.offset == 9223372036854775807


def test_error_texts_hold_nothing_a_json_parser_refuses():
    assert encode_result(retry(ValueError("a\0b \ud800 c")))["error"] == "a\ufffdb ? c"
    assert encode_result(fail("plain"))["error"] == "plain"
    assert "error" not in encode_result(retry())
    assert encode_result(fail(KeyError()))["error"] == "KeyError"


def test_emitted_bytes():
    r = encode_result(emit({"key": bytearray(b"\xff\0"), "value": b"ok"},
                           {"value": memoryview(b"x"), "headers": {"h": b"hi", "n": None}},
                           {"value": b"\xff".decode("utf-8", "surrogateescape")}))
    assert r["emit"] == [{"key_b64": "/wA=", "value": "ok"},
                         {"value": "x", "headers": {"h": "hi", "n": None}},
                         {"value_b64": "/w=="}]


@pytest.mark.parametrize("rec,why", [
    ({"topic": ""}, "topic is not a non-empty string"),
    ({"topic": 5}, "topic is not a non-empty string"),
    ({"value": 5}, "value is not str, bytes or None"),
    ({"value": "\ud800"}, "lone surrogate"),
    ({"headers": {"a\0": "x"}}, "header name that is not text"),
    ({"headers": {"a": 1}}, "headers.a is not str"),
    ({"headers": [1]}, "headers is not a mapping"),
    (None, "is not a mapping"),
])
def test_bad_records_are_refused(rec, why):
    with pytest.raises(ResultError, match=why):
        encode_result(emit(rec))
    assert encode_result(ok()) == {"status": "ok"}
