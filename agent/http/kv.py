"""`/v1/kv/*` and `/v1/txn` with Consul's query parameters, status codes and headers.

Keys are byte strings: the path is decoded with surrogateescape (agent.httpd.web.decode_path), so
`a%ff` and `a%fe` are two keys all the way through Raft and the store. JSON shows a key's non-UTF-8
bytes as U+FFFD, as Consul's does (`shown_key`). Body limits (README "Limits"): a KV value MAX_VALUE, a
transaction MAX_TXN_BODY, both refused from Content-Length before the body is read.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.http.api import (
    U64,
    Backend,
    body_too_large,
    canonical_keys,
    decode_json,
    flag,
    json_response,
    parse_uint,
    read_meta_headers,
    read_query,
    shown_key,
)
from pyconsul.agent.httpd import web
from pyconsul.agent.state import commands as c
from pyconsul.agent.state.kv import txn_result_json
from pyconsul.agent.state.results import TxnResult

MAX_VALUE = 512 * 1024  # Consul's kv_max_value_size default
MAX_TXN_BODY = 512 * 1024  # Consul's txn_max_req_len default: a whole /v1/txn body
MAX_TXN_OPS = 64


def _shown(entry: dict[str, Any]) -> dict[str, Any]:
    key = entry.get("Key")
    if isinstance(key, str) and not key.isascii():
        return {**entry, "Key": shown_key(key)}
    return entry


def register(app: web.Application, backend: Backend) -> None:
    async def kv_get(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        q = request.query
        if flag(request, "keys"):
            args = {"prefix": key, "separator": q.get("separator", "")}
            value, meta = await read_query(request, backend, "kv.keys", args)
            return json_response([shown_key(k) for k in value] if value else value, 200 if value else 404,
                                 read_meta_headers(meta))
        if flag(request, "recurse"):
            value, meta = await read_query(request, backend, "kv.list", {"prefix": key})
            return json_response([_shown(e) for e in value] if value else value, 200 if value else 404,
                                 read_meta_headers(meta))
        if not key:  # Consul: only ?keys and ?recurse may name no key (the whole store)
            raise BadRequest("Missing key name")
        value, meta = await read_query(request, backend, "kv.get", {"key": key})
        headers = read_meta_headers(meta)
        if value is None:
            return web.Response(status=404, headers=headers)
        if flag(request, "raw"):
            raw = base64.b64decode(value["Value"]) if value.get("Value") else b""
            return web.Response(body=raw, headers=headers, content_type="application/octet-stream")
        return json_response([_shown(value)], 200, headers)

    async def kv_put(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if not key:
            raise BadRequest("Missing key name")
        if request.content_length is not None and request.content_length > MAX_VALUE:
            return body_too_large(request, MAX_VALUE)  # the route's max_body: the body was not read
        try:
            value = await request.read()
        except web.HTTPRequestEntityTooLarge:  # chunked and beyond the limit: not received
            return body_too_large(request, MAX_VALUE)
        if len(value) > MAX_VALUE:
            return body_too_large(request, MAX_VALUE)
        q = request.query
        flags = parse_uint(q, "flags", 0)
        cmd: c.Command
        if ("acquire" in q and not q["acquire"]) or ("release" in q and not q["release"]):
            raise BadRequest("Missing session: ?acquire= and ?release= need a session ID")
        if "acquire" in q:
            cmd = c.KVLock(key, value, flags, q["acquire"], now=time.time())
        elif "release" in q:
            cmd = c.KVUnlock(key, value, flags, q["release"])
        elif "cas" in q:
            cmd = c.KVCAS(key, value, flags, parse_uint(q, "cas", 0))
        else:
            cmd = c.KVSet(key, value, flags)
        return json_response(bool(await backend.write(c.encode(cmd))))

    async def kv_delete(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        q = request.query
        cmd: c.Command
        if flag(request, "recurse"):
            cmd = c.KVDeleteTree(key)
        elif not key:
            raise BadRequest("Missing key name")
        elif "cas" in q:
            cmd = c.KVDeleteCAS(key, parse_uint(q, "cas", 0))
        else:
            cmd = c.KVDelete(key)
        return json_response(bool(await backend.write(c.encode(cmd))))

    async def txn(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_TXN_BODY:
            return body_too_large(request, MAX_TXN_BODY)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return body_too_large(request, MAX_TXN_BODY)
        body = canonical_keys(decode_json(raw, "Failed to parse body"))
        if not isinstance(body, list):
            raise BadRequest("Failed to parse body: expected a JSON array of operations")
        if len(body) > MAX_TXN_OPS:
            return web.Response(status=413, text=f"Transaction contains too many operations ({len(body)} > "
                                                 f"{MAX_TXN_OPS})\n")
        ops = tuple(_txn_op(i, op) for i, op in enumerate(body))
        result = await backend.write(c.encode(c.Txn(ops, now=time.time())))
        if not isinstance(result, TxnResult):
            raise TypeError(f"a transaction answered {type(result).__name__}")
        out = txn_result_json(result)
        if out["Results"]:
            out["Results"] = [{**r, "KV": _shown(r["KV"])} for r in out["Results"]]
        return json_response(out, 200 if result.ok else 409)

    r = app.router
    r.add_get("/v1/kv/{key:.*}", kv_get)
    r.add_put("/v1/kv/{key:.*}", kv_put, max_body=MAX_VALUE)
    r.add_delete("/v1/kv/{key:.*}", kv_delete)
    r.add_put("/v1/txn", txn, max_body=MAX_TXN_BODY)


def _txn_op(i: int, op: Any) -> c.TxnOp:
    if not isinstance(op, dict) or not isinstance(op.get("KV"), dict):
        raise BadRequest(f"Failed to parse body: operation {i} is not a KV operation")
    kv = op["KV"]
    verb = kv.get("Verb")
    key = kv.get("Key", "")
    if not isinstance(verb, str) or not isinstance(key, str):
        raise BadRequest(f"Failed to parse body: operation {i}: Verb and Key must be strings")
    raw = kv.get("Value")
    try:
        value = base64.b64decode(raw, validate=True) if raw else b""
    except (ValueError, TypeError):
        raise BadRequest(f"Failed to parse body: operation {i}: Value must be base64") from None
    if len(value) > MAX_VALUE:
        raise BadRequest(f"Failed to parse body: operation {i}: value too large")
    flags, index = kv.get("Flags", 0), kv.get("Index", 0)
    session = kv.get("Session", "")
    if not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < U64 for x in (flags, index)):
        raise BadRequest(f"Failed to parse body: operation {i}: Flags and Index must be unsigned integers")
    if not isinstance(session, str):
        raise BadRequest(f"Failed to parse body: operation {i}: Session must be a string")
    return c.TxnOp(verb, key, value, flags, index, session)
