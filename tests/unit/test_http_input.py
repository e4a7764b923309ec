"""Request decoding in agent/http without a server: uint64 query parameters, JSON bodies (depth, NaN,
overflow, lone surrogates), Consul's LockDelay units and Checks rules, and how byte keys are shown."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.http.api import MAX_JSON_DEPTH, U64, decode_json, parse_uint, shown_key
from pyconsul.agent.http.session import _create_cmd, lock_delay
from pyconsul.agent.httpd.web import decode_path


@pytest.mark.parametrize("raw", [str(U64), "-1", "+1", " 1", "1_000", "1e3", "0x10", "١", "9" * 30, "abc"])
def test_parse_uint_is_go_parseuint(raw: str) -> None:
    with pytest.raises(BadRequest, match=r"^Invalid index"):
        parse_uint({"index": raw}, "index", 0)


def test_parse_uint_accepts_the_whole_uint64_range() -> None:
    assert parse_uint({"index": str(U64 - 1)}, "index", 0) == U64 - 1
    assert parse_uint({"index": "007"}, "index", 0) == 7
    assert parse_uint({}, "index", 3) == 3 and parse_uint({"index": ""}, "index", 3) == 3


@pytest.mark.parametrize("raw", [
    b"[" * 5000 + b"]" * 5000,  # RecursionError inside json
    b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),  # parses, but deeper than the limit
    b'{"a":' * 200 + b"1" + b"}" * 200,
    b"NaN", b"[Infinity]", b'{"x": -Infinity}', b"1e400", b'{"x": [1e999]}', b"9" * 5000,
    b"\xff", b"{", b'{"a": 1} x',
])
def test_bad_json_is_bad_request(raw: bytes) -> None:
    with pytest.raises(BadRequest, match=r"^Request decode failed: "):
        decode_json(raw)


def test_json_limits_and_surrogates() -> None:
    ok = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert decode_json(ok) is not None
    assert decode_json(b"  ", empty={}) == {}
    assert decode_json(b'{"k": "a\\udcffb\\ud83d\\ude00", "\\ud800": ["\\udfff"]}') == {
        "k": "a\ufffdb\U0001f600", "\ufffd": ["\ufffd"]}
    with pytest.raises(BadRequest, match=r"^Failed to parse body: "):
        decode_json(b"[", "Failed to parse body")


@pytest.mark.parametrize(("value", "seconds"), [
    (5000, 5e-6), (1000, 1e-6), (999, 999.0), (15, 15.0), (0, 0.0), (999.9, 999.0), (2.5e10, 25.0),
    ("15s", 15.0), ("15ns", 15.0), ("1.5us", 1.5e-6), ("1us", 1e-6), ("0", 0.0), ("1m", 60.0),
])
def test_lock_delay_is_consuls_rule(value: Any, seconds: float) -> None:
    assert lock_delay(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [-1, -0.5, "-5s", float("inf"), float("nan"), 1e300, "forever", True, [], {}])
def test_bad_lock_delay_is_bad_request(value: Any) -> None:
    with pytest.raises(BadRequest, match=r"^Request decode failed: LockDelay"):
        lock_delay(value)


def test_session_create_checks_and_lock_delay() -> None:
    def cmd(body: dict[str, Any]) -> Any:
        return _create_cmd(json.dumps(body).encode(), "n1")

    assert cmd({}).checks == ("serfHealth",) and cmd({}).lock_delay_seconds == 15.0
    assert cmd({"Checks": []}).checks == () and cmd({"checks": None}).checks == ()
    assert cmd({"LockDelay": 5000}).lock_delay_seconds == pytest.approx(5e-6)
    assert cmd({"lockdelay": "5s"}).lock_delay_seconds == 5.0
    for bad in ("serfHealth", {"a": 1}, [1], 5):
        with pytest.raises(BadRequest, match="Checks must be a list"):
            cmd({"Checks": bad})
    with pytest.raises(BadRequest, match="nested deeper"):
        _create_cmd(b'{"Checks": ' + b"[" * 100 + b"]" * 100 + b"}", "n1")


def test_byte_keys_are_shown_as_consul_shows_them() -> None:
    ff, fe = decode_path("/v1/kv/a%ff"), decode_path("/v1/kv/a%fe")
    assert ff != fe
    assert shown_key(ff) == shown_key(fe) == "/v1/kv/a\ufffd"
    assert shown_key("café") == "café" and shown_key("plain") == "plain"


def test_readme_limits_match_the_code() -> None:
    from pathlib import Path

    from pyconsul.agent.http import api, kv, server, snapshot
    from pyconsul.agent.httpd import h1
    from pyconsul.agent.state import archive

    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    table = readme.split("### Limits", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| What")}

    def size(n: int) -> str:
        return f"{n // 1024 // 1024} MiB" if n >= 1024 * 1024 else f"{n // 1024} KiB"

    assert rows["`PUT /v1/kv/<key>` body (the value)"] == size(kv.MAX_VALUE)
    assert rows["`PUT /v1/txn` body"] == f"{size(kv.MAX_TXN_BODY)}, ≤ {kv.MAX_TXN_OPS} operations"
    assert rows["`PUT /v1/snapshot` body (compressed archive)"] == size(snapshot.MAX_ARCHIVE)
    assert rows["`PUT /v1/snapshot` state after decompression"] == (
        f"{size(archive.MAX_STATE)} (`state.bin`), {size(archive.MAX_SMALL)} other members")
    assert rows["Any other request body"] == size(api.DEFAULT_MAX_BODY)
    assert rows["Request bodies held at once, all connections"] == size(server.MAX_BUFFERED)
    assert rows["JSON request bodies: nesting depth"] == str(api.MAX_JSON_DEPTH)
    assert rows["HTTP request line / header line / head / header fields"] == (
        f"{size(h1.MAX_LINE)} / {size(h1.MAX_LINE)} / {size(h1.MAX_HEAD)} / {h1.MAX_HEADERS}")
    assert rows["HTTP head arrival / body stall / idle keep-alive"] == (
        f"{h1.HEAD_TIMEOUT:g} s / {h1.BODY_TIMEOUT:g} s / {h1.KEEPALIVE_TIMEOUT:g} s")
