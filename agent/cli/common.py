"""What the `pyconsul` verbs share: errors, the HTTP client for the agent's API, flags and help, tables.

A verb raises CLIError (printed as-is, exit 1) or Exit(code); `parse` prints the verb's help on `-h`
(stdout, exit 0) and on a bad flag (stderr after the error, exit 1). Subcommand groups use `run_group`.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

from pyconsul.agent.flags import FlagError, FlagSet, HelpRequested, ParseResult

DEFAULT_HTTP_ADDR = "127.0.0.1:8500"
HTTP_ADDR_ENVS = ("CONSUL_HTTP_ADDR", "PYCONSUL_HTTP_ADDR")
HTTP_TOKEN_ENVS = ("CONSUL_HTTP_TOKEN", "PYCONSUL_HTTP_TOKEN")
_TOKEN: list[str] = [""]  # the ACL token every request of this command sends (set by http_addr from -token / env)

# Query parameters: a mapping, or (name, value) pairs when a name repeats (`node-meta`).
Query: TypeAlias = Mapping[str, str] | Sequence[tuple[str, str]]
# A verb or subcommand: its arguments (after the name) -> exit code.
Command: TypeAlias = Callable[[Sequence[str]], int]
# Verb or subcommand name -> (function, one-line description for the listing).
Table: TypeAlias = Mapping[str, tuple[Command, str]]


class CLIError(Exception):
    """A user-facing failure; str() is printed as-is and the exit code is 1."""


class ApiError(Exception):
    """An HTTP call to the agent failed; str() follows Go's net/http wording.

    `code` is the HTTP status for non-2xx answers and None for transport failures.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class Exit(Exception):
    """Control flow: stop the command with this exit code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


# ---------------------------------------------------------------- HTTP


def default_http_addr(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    for name in HTTP_ADDR_ENVS:
        if env.get(name):
            return env[name]
    return DEFAULT_HTTP_ADDR


def parse_http_addr(value: str, environ: Mapping[str, str] | None = None) -> str:
    """`host:port`, `http://host:port` or `https://host:port` -> base URL without a trailing slash
    (`host:port` is https when $CONSUL_HTTP_SSL is true, as Consul's CLI)."""
    value = value.strip()
    if not value:
        raise CLIError("Error: -http-addr must not be empty")
    if "://" in value:
        scheme = value.split("://", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise CLIError(f"Error: unsupported -http-addr scheme {scheme!r} (use http or https)")
        return value.rstrip("/")
    env = os.environ if environ is None else environ
    scheme = "https" if env.get("CONSUL_HTTP_SSL", "").lower() in ("1", "true", "t", "yes") else "http"
    return f"{scheme}://" + value.rstrip("/")


TLS_ENVS = ("CONSUL_CACERT", "CONSUL_CAPATH", "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY", "CONSUL_HTTP_SSL_VERIFY")


def https_context(environ: Mapping[str, str] | None = None) -> Any:
    """The ssl.SSLContext for https:// agent addresses from Consul's CLI variables ($CONSUL_CACERT,
    $CONSUL_CAPATH, $CONSUL_CLIENT_CERT, $CONSUL_CLIENT_KEY, $CONSUL_HTTP_SSL_VERIFY=false), or None when none
    is set (the system's trust store then applies)."""
    env = os.environ if environ is None else environ
    if not any(env.get(name) for name in TLS_ENVS):
        return None
    import ssl

    try:
        ctx = ssl.create_default_context(cafile=env.get("CONSUL_CACERT") or None,
                                         capath=env.get("CONSUL_CAPATH") or None)
        if env.get("CONSUL_CLIENT_CERT"):
            ctx.load_cert_chain(env["CONSUL_CLIENT_CERT"], env.get("CONSUL_CLIENT_KEY") or None)
    except (OSError, ssl.SSLError) as exc:
        raise CLIError(f"Error loading the TLS files named by $CONSUL_CACERT/$CONSUL_CLIENT_CERT...: {exc}") from None
    if env.get("CONSUL_HTTP_SSL_VERIFY", "").lower() in ("0", "false", "f", "no"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def opener() -> Any:
    """A urllib opener without proxies, with https_context() for https:// addresses."""
    import urllib.request

    handlers: list[Any] = [urllib.request.ProxyHandler({})]
    ctx = https_context()
    if ctx is not None:
        handlers.append(urllib.request.HTTPSHandler(context=ctx))
    return urllib.request.build_opener(*handlers)


def dial_error(method: str, url: str, reason: object) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    prefix = f'{method.capitalize()} "{url}"'
    if isinstance(reason, socket.gaierror):
        return f"{prefix}: dial tcp: lookup {host}: no such host"
    if isinstance(reason, TimeoutError):
        return f"{prefix}: dial tcp {hostport}: i/o timeout"
    if isinstance(reason, ConnectionRefusedError):
        return f"{prefix}: dial tcp {hostport}: connect: connection refused"
    if isinstance(reason, OSError) and reason.strerror:
        return f"{prefix}: dial tcp {hostport}: connect: {reason.strerror.lower()}"
    return f"{prefix}: {reason}"


def api_request(
    method: str,
    base_url: str,
    path: str,
    *,
    query: Query | None = None,
    body: object = None,
    raw: bytes | None = None,
    timeout: float = 30.0,
    decode: bool = True,
) -> Any:
    """One call to the agent. Returns the decoded JSON body (text if not JSON, None if empty).

    `body` is sent as JSON, `raw` as-is (application/octet-stream, like Consul's KV client). Query
    parameters are sorted by name, as Go's url.Values.Encode does.
    Raises ApiError: non-2xx -> "Unexpected response code: <code> (<body>)"; transport failures ->
    Go-style `Get "<url>": dial tcp <host:port>: connect: connection refused`.
    With decode=False the body comes back as bytes, untouched.
    """
    import urllib.error  # lazy: `pyconsul agent` never makes HTTP requests (and http.client is heavy)
    import urllib.request

    pairs = sorted(query.items() if isinstance(query, Mapping) else query or (), key=lambda kv: kv[0])
    url = base_url + path + ("?" + urllib.parse.urlencode(pairs) if pairs else "")
    data = raw
    if raw is None and body is not None:
        data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method.upper())
    if _TOKEN[0]:
        req.add_header("X-Consul-Token", _TOKEN[0])
    if raw is not None:
        req.add_header("Content-Type", "application/octet-stream")
    elif data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with opener().open(req, timeout=timeout) as resp:
            payload: bytes = resp.read()
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace").strip()
        raise ApiError(f"Unexpected response code: {exc.code} ({text})", exc.code) from None
    except urllib.error.URLError as exc:
        raise ApiError(dial_error(method, url, exc.reason)) from None
    except OSError as exc:  # includes timeouts while reading the response
        raise ApiError(dial_error(method, url, exc)) from None
    if not decode:
        return payload
    if not payload.strip():
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "replace")


def api_read(
    base_url: str,
    path: str,
    *,
    query: Query | None = None,
    timeout: float = 30.0,
    missing_ok: bool = False,
) -> tuple[Any, int]:
    """A GET returning (decoded JSON body or None, X-Consul-Index or 0): what blocking queries need.

    With missing_ok a 404 is (None, its index), as Consul's KV reads answer a missing key. Other
    failures raise ApiError as api_request does.
    """
    import urllib.error
    import urllib.request

    pairs = sorted(query.items() if isinstance(query, Mapping) else query or (), key=lambda kv: kv[0])
    url = base_url + path + ("?" + urllib.parse.urlencode(pairs) if pairs else "")
    try:
        get = urllib.request.Request(url, method="GET")
        if _TOKEN[0]:
            get.add_header("X-Consul-Token", _TOKEN[0])
        with opener().open(get, timeout=timeout) as resp:
            payload: bytes = resp.read()
            index = _index_header(resp.headers.get("X-Consul-Index"))
    except urllib.error.HTTPError as exc:
        if missing_ok and exc.code == 404:
            exc.read()
            return None, _index_header(exc.headers.get("X-Consul-Index"))
        text = exc.read().decode("utf-8", "replace").strip()
        raise ApiError(f"Unexpected response code: {exc.code} ({text})", exc.code) from None
    except urllib.error.URLError as exc:
        raise ApiError(dial_error("GET", url, exc.reason)) from None
    except OSError as exc:
        raise ApiError(dial_error("GET", url, exc)) from None
    if not payload.strip():
        return None, index
    try:
        return json.loads(payload), index
    except ValueError:
        raise ApiError(f"Failed to decode response from {url}: not JSON") from None


def _index_header(value: str | None) -> int:
    return int(value) if value and value.isascii() and value.isdigit() else 0


# ---------------------------------------------------------------- output


def columnize(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces; the last column is not padded (Go columnize)."""
    if not rows:
        return []
    ncols = max(len(r) for r in rows)
    widths = [max((len(r[i]) for r in rows if i < len(r)), default=0) for i in range(ncols)]
    lines = []
    for r in rows:
        cells = [c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)]
        lines.append("  ".join(cells))
    return lines


def out(lines: Sequence[str]) -> None:
    for line in lines:
        print(line)


# ---------------------------------------------------------------- flags and subcommands


def parse(fs: FlagSet, args: Sequence[str], synopsis: str, description: str) -> ParseResult:
    help_text = f"Usage: pyconsul {synopsis}\n\n  {description}\n"
    if fs.flags:
        help_text += "\nOptions:\n\n" + fs.usage()
    try:
        return fs.parse(args)
    except HelpRequested:
        sys.stdout.write(help_text)
        raise Exit(0) from None
    except FlagError as exc:
        sys.stderr.write(f"{exc}\n\n{help_text}")
        raise Exit(1) from None


def http_flags(fs: FlagSet) -> None:
    fs.string("http-addr", default_http_addr(),
              "Address of the agent's HTTP API: host:port, http://host:port or https://host:port. "
              "Defaults to $CONSUL_HTTP_ADDR, then $PYCONSUL_HTTP_ADDR. For HTTPS: $CONSUL_HTTP_SSL, "
              "$CONSUL_CACERT, $CONSUL_CAPATH, $CONSUL_CLIENT_CERT, $CONSUL_CLIENT_KEY, $CONSUL_HTTP_SSL_VERIFY.")
    fs.string("token", "", "ACL token to use in the request (sent as X-Consul-Token). Defaults to "
              "$CONSUL_HTTP_TOKEN, then $PYCONSUL_HTTP_TOKEN.")


def server_flags(fs: FlagSet) -> None:
    """Consul's "server" flags, shared by the verbs that read from the servers."""
    fs.string("datacenter", "", "Name of the datacenter to query. If unspecified, this will default to the "
              "datacenter of the queried agent.")
    fs.bool("stale", False, "Permit any Consul server (non-leader) to respond to this request. This allows for "
            "lower latency and higher throughput, but can result in stale data. This option has no effect on "
            "non-read operations. The default value is false.")


def server_query(res: ParseResult, *, read: bool = True) -> dict[str, str]:
    """`dc` and (for reads) `stale` query parameters from the flags of `server_flags`."""
    query = {"dc": res.str("datacenter")} if res.str("datacenter") else {}
    if read and res.bool("stale"):
        query["stale"] = ""
    return query


def run_group(name: str, table: Table, args: Sequence[str], description: str) -> int:
    """A verb made of subcommands (`kv put`): no subcommand prints the listing on stderr and exits 1."""
    width = max(len(n) for n in table)
    text = (f"Usage: pyconsul {name} <subcommand> [options] [args]\n\n  {description}\n\nSubcommands:\n"
            + "".join(f"    {n.ljust(width)}    {t}\n" for n, (_, t) in sorted(table.items())))
    if not args:
        sys.stderr.write(text)
        return 1
    if args[0] in ("-h", "-help", "--help"):
        sys.stdout.write(text)
        return 0
    entry = table.get(args[0])
    if entry is None:
        sys.stderr.write(f"Error: unknown command '{name} {args[0]}'\n\n{text}")
        return 1
    return entry[0](args[1:])


def no_positional(res: ParseResult, verb: str) -> None:
    if res.positional:
        raise CLIError(f"Error: {verb} takes no arguments, got {res.positional[0]!r}")


def no_args(res: ParseResult) -> None:
    """For subcommands (`catalog nodes`), which word this error as Consul's do."""
    if res.positional:
        raise CLIError(f"Too many arguments (expected 0, got {len(res.positional)})")


def http_addr(res: ParseResult) -> str:
    """The agent's base URL from the `-http-addr` flag of `http_flags`; also takes the ACL token of `-token`
    (else $CONSUL_HTTP_TOKEN, $PYCONSUL_HTTP_TOKEN) that every request of this command then sends."""
    set_token(res.str("token"))
    return parse_http_addr(res.str("http-addr"))


def set_token(flag: str, environ: Mapping[str, str] | None = None) -> str:
    """The ACL token requests send: `flag` if given, else the first of HTTP_TOKEN_ENVS set."""
    env = os.environ if environ is None else environ
    token = flag or next((env[name] for name in HTTP_TOKEN_ENVS if env.get(name)), "")
    _TOKEN[0] = token
    return token
