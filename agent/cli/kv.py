"""`pyconsul kv <put|get|delete|export|import>`: the key/value verbs of Consul 1.7's CLI over the HTTP API.

Output and messages follow Consul's: successes on stdout, `Error! ...` on stderr with exit code 1.
Values travel base64-encoded in the JSON of `GET /v1/kv/...` and raw in the body of `PUT /v1/kv/...`.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import ApiError, CLIError
from pyconsul.agent.flags import FlagSet, ParseResult

# Characters Go's url.URL leaves unescaped in a path; everything else is percent-encoded.
_PATH_SAFE = "/$&+,:;=@"
_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
# `kv get -detailed` is rendered by Go's text/tabwriter with padding 6: labels padded to the longest + 6.
_DETAIL_WIDTH = len("CreateIndex") + 6


def kv_path(key: str) -> str:
    return "/v1/kv/" + urllib.parse.quote(key, safe=_PATH_SAFE)


def go_b64decode(text: str) -> bytes:
    """Go's base64.StdEncoding.DecodeString: padding required, CR/LF ignored; ValueError in Go's words."""
    for i, ch in enumerate(text):
        if ch not in _B64_ALPHABET and ch not in "=\r\n":
            raise ValueError(f"illegal base64 data at input byte {i}")
    stripped = text.replace("\r", "").replace("\n", "")
    try:
        return base64.b64decode(stripped, validate=True)
    except binascii.Error:
        raise ValueError(f"illegal base64 data at input byte {len(stripped) - len(stripped) % 4}") from None


def read_file(path: str) -> bytes:
    """Read a whole file; ValueError worded like Go's os.ReadFile."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except IsADirectoryError:
        raise ValueError(f"read {path}: is a directory") from None
    except OSError as exc:
        raise ValueError(f"open {path}: {(exc.strerror or str(exc)).lower()}") from None


def load_data(arg: str) -> bytes:
    """A DATA argument: `@file` reads the file, a lone `-` reads stdin, anything else is the data itself."""
    if arg.startswith("@"):
        try:
            return read_file(arg[1:])
        except ValueError as exc:
            raise ValueError(f"Failed to read file: {exc}") from None
    if arg == "-":
        try:
            stream = getattr(sys.stdin, "buffer", None)
            return stream.read() if stream is not None else sys.stdin.read().encode()
        except OSError as exc:
            raise ValueError(f"Failed to read stdin: {exc}") from None
    return arg.encode()


def pair_value(pair: Mapping[str, Any]) -> bytes:
    value = pair.get("Value")
    return base64.b64decode(value) if isinstance(value, str) and value else b""


def _value_text(value: bytes, b64: bool) -> bytes:
    return base64.b64encode(value) if b64 else value


def detailed_pair(pair: Mapping[str, Any], b64: bool = False) -> bytes:
    """One pair the way `consul kv get -detailed` prints it (no trailing newline)."""
    fields = [
        ("CreateIndex", str(pair.get("CreateIndex", 0))),
        ("Flags", str(pair.get("Flags", 0))),
        ("Key", str(pair.get("Key", ""))),
        ("LockIndex", str(pair.get("LockIndex", 0))),
        ("ModifyIndex", str(pair.get("ModifyIndex", 0))),
        ("Session", str(pair.get("Session") or "-")),
    ]
    head = b"".join(f"{name.ljust(_DETAIL_WIDTH)}{value}\n".encode() for name, value in fields)
    return head + "Value".ljust(_DETAIL_WIDTH).encode() + _value_text(pair_value(pair), b64)


def export_json(pairs: Sequence[Mapping[str, Any]]) -> str:
    """Consul's `kv export` document: Go's json.MarshalIndent(entries, "", "\\t").

    Consul indents with a tab (not two spaces) and, like every Go json encoder, escapes <, > and &
    (and U+2028/U+2029) as \\uXXXX; we reproduce both so exports diff cleanly against Consul's.
    """
    entries = [{"key": str(p.get("Key", "")), "flags": int(p.get("Flags") or 0),
                "value": str(p.get("Value") or "")} for p in pairs]
    text = json.dumps(entries, indent="\t", ensure_ascii=False)
    for ch in "<>&\u2028\u2029":
        text = text.replace(ch, f"\\u{ord(ch):04x}")
    return text


def _write(data: bytes) -> None:
    """Raw bytes to stdout (values need not be UTF-8), ordered after anything printed before."""
    sys.stdout.flush()
    stream = getattr(sys.stdout, "buffer", None)
    if stream is None:
        sys.stdout.write(data.decode("utf-8", "replace"))
    else:
        stream.write(data)
        stream.flush()


def _flagset(name: str) -> FlagSet:
    fs = FlagSet(name)
    common.http_flags(fs)
    common.server_flags(fs)
    return fs


def _call(res: ParseResult, method: str, path: str, query: Mapping[str, str], raw: bytes | None = None) -> Any:
    return common.api_request(method, common.http_addr(res), path, query=query, raw=raw)


def _uint(res: ParseResult, name: str) -> int:
    value = res.int(name)
    if value < 0:  # Consul's flag is a Go uint64
        raise CLIError(f'invalid value "{value}" for flag -{name}: parse error')
    return value


def _one_key(res: ParseResult) -> str:
    """The optional single KEY of get/delete/export, without a leading slash (as Consul strips it)."""
    if len(res.positional) > 1:
        raise CLIError(f"Too many arguments (expected 1, got {len(res.positional)})")
    key = res.positional[0] if res.positional else ""
    return key[1:] if key.startswith("/") else key


def cmd_put(args: Sequence[str]) -> int:
    fs = _flagset("kv put")
    fs.bool("acquire", False, "Obtain a lock on the key. If the key does not exist, this operation will create the "
            "key and obtain the lock. The session must already exist and be specified via the -session flag.")
    fs.bool("base64", False, "Treat the data as base 64 encoded. The default value is false.")
    fs.bool("cas", False, "Perform a Check-And-Set operation. Specifying this value also requires the "
            "-modify-index flag to be set. The default value is false.")
    fs.int("flags", 0, "Unsigned integer value to assign to this key-value pair. The default value is 0.")
    fs.int("modify-index", 0, "Unsigned integer representing the ModifyIndex of the key. This is used in "
           "combination with the -cas flag.")
    fs.bool("release", False, "Forfeit the lock on the key at the given path. This requires the -session flag to "
            "be set. The key must be held by the session in order to be unlocked.")
    fs.string("session", "", "User-defined identifier for this session as a string. This is commonly used with "
              "the -acquire and -release operations to build robust locking.")
    res = common.parse(fs, args, "kv put [options] KEY [DATA]",
                       "Writes the data to the given path in the key-value store. DATA may be `@file` to read a file\n"
                       "  or `-` to read stdin; without DATA an empty value is written.")
    pos = res.positional
    if not pos:
        raise CLIError("Error! Missing KEY argument")
    if len(pos) > 2:
        raise CLIError(f"Error! Too many arguments (expected 1 or 2, got {len(pos)})")
    key = pos[0]
    try:
        data = load_data(pos[1]) if len(pos) == 2 and pos[1] else b""
    except ValueError as exc:
        raise CLIError(f"Error! {exc}") from None
    if res.bool("base64"):
        try:
            data = go_b64decode(data.decode("latin-1"))
        except ValueError as exc:
            raise CLIError(f"Error! Cannot base 64 decode data: {exc}") from None
    session, cas, acquire, release = res.str("session"), res.bool("cas"), res.bool("acquire"), res.bool("release")
    if (acquire or release) and not session:
        raise CLIError("Error! Missing -session (required with -acquire and -release)")
    flags, modify_index = _uint(res, "flags"), _uint(res, "modify-index")
    if cas and modify_index == 0:
        raise CLIError("Must specify -modify-index with -cas!")
    query = common.server_query(res, read=False)
    if flags:
        query["flags"] = str(flags)
    if cas:
        query["cas"] = str(modify_index)
    elif acquire:
        query["acquire"] = session
    elif release:
        query["release"] = session
    try:
        ok = _call(res, "PUT", kv_path(key), query, raw=data) is True
    except ApiError as exc:
        prefix = f"Error! Did not write to {key}" if cas else "Error! Failed writing data"
        raise CLIError(f"{prefix}: {exc}") from None
    if cas and not ok:
        raise CLIError(f"Error! Did not write to {key}: CAS failed")
    if acquire and not cas:
        if not ok:
            raise CLIError("Error! Did not acquire lock")
        print(f"Success! Lock acquired on: {key}")
    elif release and not cas:
        if not ok:
            raise CLIError("Error! Did not release lock")
        print(f"Success! Lock released on: {key}")
    else:
        print(f"Success! Data written to: {key}")
    return 0


def cmd_get(args: Sequence[str]) -> int:
    fs = _flagset("kv get")
    fs.bool("base64", False, "Base64 encode the value. The default value is false.")
    fs.bool("detailed", False, "Provide additional metadata about the key in addition to the value such as the "
            "ModifyIndex and any flags that may have been set on the key. The default value is false.")
    fs.bool("keys", False, "List keys which start with the given prefix, but not their values. This is especially "
            "useful if you only need the key names themselves. The default value is false.")
    fs.bool("recurse", False, "Recursively look at all keys prefixed with the given path. The default value is "
            "false.")
    fs.string("separator", "/", "String to use as a separator between keys. This option is only taken into "
              "account when paired with the -keys flag.")
    res = common.parse(fs, args, "kv get [options] [KEY_OR_PREFIX]",
                       "Retrieves the value from Consul's key-value store at the given key name.")
    key = _one_key(res)
    keys, recurse, b64, detailed = res.bool("keys"), res.bool("recurse"), res.bool("base64"), res.bool("detailed")
    if not key and not (recurse or keys):
        raise CLIError("Error! Missing KEY argument")
    query = common.server_query(res)
    if keys:
        query["keys"] = ""
        if res.str("separator"):
            query["separator"] = res.str("separator")
    elif recurse:
        query["recurse"] = ""
    try:
        data = _call(res, "GET", kv_path(key), query)
    except ApiError as exc:
        if exc.code != 404:
            raise CLIError(f"Error querying Consul agent: {exc}") from None
        data = None
    if data is not None and not isinstance(data, list):
        raise CLIError(f"Error querying Consul agent: unexpected response {data!r}")
    items: list[Any] = data or []
    if keys:
        _write(b"".join(f"{k}\n".encode() for k in items))
        return 0
    pairs = [p for p in items if isinstance(p, dict)]
    if recurse:
        out = b""
        for i, pair in enumerate(pairs):
            if detailed:
                out += detailed_pair(pair, b64) + (b"\n\n" if i < len(pairs) - 1 else b"\n")
            else:
                out += str(pair.get("Key", "")).encode() + b":" + _value_text(pair_value(pair), b64) + b"\n"
        _write(out)
        return 0
    if not pairs:
        raise CLIError(f"Error! No key exists at: {key}")
    _write((detailed_pair(pairs[0], b64) if detailed else _value_text(pair_value(pairs[0]), b64)) + b"\n")
    return 0


def cmd_delete(args: Sequence[str]) -> int:
    fs = _flagset("kv delete")
    fs.bool("cas", False, "Perform a Check-And-Set operation. Specifying this value also requires the "
            "-modify-index flag to be set. The default value is false.")
    fs.int("modify-index", 0, "Unsigned integer representing the ModifyIndex of the key. This is used in "
           "combination with the -cas flag.")
    fs.bool("recurse", False, "Recursively delete all keys with the path. The default value is false.")
    res = common.parse(fs, args, "kv delete [options] KEY_OR_PREFIX",
                       "Removes the value from Consul's key-value store at the given path.")
    key = _one_key(res)
    cas, recurse, modify_index = res.bool("cas"), res.bool("recurse"), _uint(res, "modify-index")
    if not key and not recurse:
        raise CLIError("Error! Missing KEY argument")
    if cas and modify_index == 0:
        raise CLIError("Must specify -modify-index with -cas!")
    if modify_index and not cas:
        raise CLIError("Cannot specify -modify-index without -cas!")
    if recurse and cas:
        raise CLIError("Cannot specify both -cas and -recurse!")
    query = common.server_query(res, read=False)
    if recurse:
        query["recurse"] = ""
    elif cas:
        query["cas"] = str(modify_index)
    try:
        ok = _call(res, "DELETE", kv_path(key), query) is True
    except ApiError as exc:
        if recurse:
            raise CLIError(f"Error! Did not delete prefix {key}: {exc}") from None
        if cas:
            raise CLIError(f"Error! Did not delete key {key}: {exc}") from None
        raise CLIError(f"Error deleting key {key}: {exc}") from None
    if recurse:
        print(f"Success! Deleted keys with prefix: {key}")
        return 0
    if cas and not ok:
        raise CLIError(f"Error! Did not delete key {key}: CAS failed")
    print(f"Success! Deleted key: {key}")
    return 0


def cmd_export(args: Sequence[str]) -> int:
    fs = _flagset("kv export")
    res = common.parse(fs, args, "kv export [KEY_OR_PREFIX]",
                       "Retrieves key-value pairs for the given prefix from Consul's key-value store, and writes a\n"
                       '  JSON representation to stdout. This can be used with "pyconsul kv import".')
    key = _one_key(res)
    try:
        data = _call(res, "GET", kv_path(key), {**common.server_query(res), "recurse": ""})
    except ApiError as exc:
        if exc.code != 404:
            raise CLIError(f"Error querying Consul agent: {exc}") from None
        data = None
    if data is not None and not isinstance(data, list):
        raise CLIError(f"Error querying Consul agent: unexpected response {data!r}")
    print(export_json([p for p in data or [] if isinstance(p, dict)]))
    return 0


def _import_entries(text: str) -> list[tuple[str, int, str]]:
    """Parse a `kv export` document; ValueError worded after Go's json.Unmarshal."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"Cannot unmarshal data: {exc}") from None
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise ValueError(f"Cannot unmarshal data: json: cannot unmarshal {type(doc).__name__} into Go value "
                         "of type []*kvimpexp.Entry")
    out = []
    for entry in doc:
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise ValueError("Cannot unmarshal data: json: cannot unmarshal value into Go value of type "
                             "kvimpexp.Entry")
        key, flags, value = entry.get("key", ""), entry.get("flags", 0), entry.get("value", "")
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError("Cannot unmarshal data: json: key and value must be strings")
        if not isinstance(flags, int) or isinstance(flags, bool) or flags < 0:
            raise ValueError("Cannot unmarshal data: json: cannot unmarshal value into Go struct field "
                             "Entry.flags of type uint64")
        out.append((key, flags, value))
    return out


def cmd_import(args: Sequence[str]) -> int:
    fs = _flagset("kv import")
    res = common.parse(fs, args, "kv import [DATA]",
                       "Imports key-value pairs to the key-value store from the JSON representation generated by\n"
                       '  "pyconsul kv export". DATA is the document itself, `@file` or `-` for stdin.')
    pos = res.positional
    if not pos:
        raise CLIError("Error! Missing DATA argument")
    if len(pos) > 1:
        raise CLIError(f"Error! Too many arguments (expected 1, got {len(pos)})")
    if not pos[0]:
        raise CLIError("Error! Empty DATA argument")
    try:
        entries = _import_entries(load_data(pos[0]).decode("utf-8", "replace"))
    except ValueError as exc:
        text = str(exc)
        raise CLIError(text if text.startswith("Cannot unmarshal") else f"Error! {text}") from None
    base_query = common.server_query(res, read=False)
    for key, flags, value in entries:
        try:
            raw = go_b64decode(value)
        except ValueError as exc:
            raise CLIError(f"Error base 64 decoding value for key {key}: {exc}") from None
        query = {**base_query, "flags": str(flags)} if flags else base_query
        try:
            _call(res, "PUT", kv_path(key), query, raw=raw)
        except ApiError as exc:
            raise CLIError(f"Error! Failed writing data for key {key}: {exc}") from None
        print(f"Imported: {key}")
    return 0


KV_COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "delete": (cmd_delete, "Removes data from the KV store"),
    "export": (cmd_export, "Exports a tree from the KV store as JSON"),
    "get": (cmd_get, "Retrieves or lists data from the KV store"),
    "import": (cmd_import, "Imports a tree stored as JSON to the KV store"),
    "put": (cmd_put, "Sets or updates data in the KV store"),
}


def cmd_kv(args: Sequence[str]) -> int:
    return common.run_group("kv", KV_COMMANDS, args,
                            "Interacts with Consul's key-value store: put, get, delete, export and import data.")
