"""The `pyconsul` command line: Consul-style verbs that run an agent or talk to one over HTTP.

Contract: `main()` never lets an exception escape as a traceback. Exit codes: 0 success,
1 any error (bad flags, unreachable agent, invalid config), 2 when `members` matches nothing.
Every verb has its own Go-style FlagSet and answers `-h` with its help on stdout.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import socket
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

from agent import __version__
from agent.config import ConfigError, agent_flagset, build_config, validate_paths
from agent.flags import FlagError, FlagSet, HelpRequested, ParseResult

DEFAULT_HTTP_ADDR = "127.0.0.1:8500"
HTTP_ADDR_ENVS = ("CONSUL_HTTP_ADDR", "PYCONSUL_HTTP_ADDR")
MEMBER_STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}

# Query parameters: a mapping, or (name, value) pairs when a name repeats (`node-meta`).
Query: TypeAlias = Mapping[str, str] | Sequence[tuple[str, str]]


class CLIError(Exception):
    """A user-facing failure; str() is printed as-is and the exit code is 1."""


class ApiError(Exception):
    """An HTTP call to the agent failed; str() follows Go's net/http wording.

    `code` is the HTTP status for non-2xx answers and None for transport failures.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class _Exit(Exception):
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


def parse_http_addr(value: str) -> str:
    """`host:port`, `http://host:port` or `https://host:port` -> base URL without a trailing slash."""
    value = value.strip()
    if not value:
        raise CLIError("Error: -http-addr must not be empty")
    if "://" in value:
        scheme = value.split("://", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise CLIError(f"Error: unsupported -http-addr scheme {scheme!r} (use http or https)")
        return value.rstrip("/")
    return "http://" + value.rstrip("/")


def _dial_error(method: str, url: str, reason: object) -> str:
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
    if raw is not None:
        req.add_header("Content-Type", "application/octet-stream")
    elif data is not None:
        req.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            payload: bytes = resp.read()
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace").strip()
        raise ApiError(f"Unexpected response code: {exc.code} ({text})", exc.code) from None
    except urllib.error.URLError as exc:
        raise ApiError(_dial_error(method, url, exc.reason)) from None
    except OSError as exc:  # includes timeouts while reading the response
        raise ApiError(_dial_error(method, url, exc)) from None
    if not decode:
        return payload
    if not payload.strip():
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "replace")


# ---------------------------------------------------------------- pure formatting


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


def _status_name(code: object) -> str:
    return MEMBER_STATUS.get(code, "unknown") if isinstance(code, int) else str(code)


def members_table(members: Sequence[Mapping[str, Any]], *, detailed: bool = False,
                  status: str | None = None) -> list[str]:
    """Render `/v1/agent/members` like `consul members`; [] when the status filter matches nothing.

    Rows are sorted by segment tag, then name (Consul's order). `status` is an unanchored regex
    over the status name. Raises re.error for a bad pattern.
    """
    pattern = re.compile(status) if status else None
    rows: list[list[str]] = []
    def order(m: Mapping[str, Any]) -> tuple[str, str]:
        return str((m.get("Tags") or {}).get("segment", "")), str(m.get("Name", ""))

    for m in sorted(members, key=order):
        tags: Mapping[str, str] = m.get("Tags") or {}
        state = _status_name(m.get("Status"))
        if pattern is not None and not pattern.search(state):
            continue
        addr = str(m.get("Addr", ""))
        address = f"[{addr}]:{m.get('Port', 0)}" if ":" in addr else f"{addr}:{m.get('Port', 0)}"
        if detailed:
            rows.append([str(m.get("Name", "")), address, state,
                         ",".join(sorted(f"{k}={v}" for k, v in tags.items()))])
            continue
        server = tags.get("role") == "consul"
        build = tags.get("build", "") or "< 0.3"
        rows.append([
            str(m.get("Name", "")), address, state, "server" if server else "client",
            build.split(":", 1)[0], tags.get("vsn", ""), tags.get("dc", ""),
            "<all>" if server else (tags.get("segment") or "<default>"),
        ])
    if not rows:
        return []
    header = (["Node", "Address", "Status", "Tags"] if detailed
              else ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Segment"])
    return columnize([header, *rows])


def keyring_lines(responses: Sequence[Mapping[str, Any]]) -> list[str]:
    """Render `GET /v1/operator/keyring` like `consul keyring -list` (keys sorted)."""
    out = ["==> Gathering installed encryption keys..."]
    for r in responses:
        if r.get("WAN"):
            pool = "WAN"
        else:
            pool = f"{r.get('Datacenter', '')} (LAN)"
            if r.get("Segment"):
                pool += f" [{r['Segment']}]"
        out += ["", f"{pool}:"]
        total = r.get("NumNodes", 0)
        for key, count in sorted((r.get("Keys") or {}).items()):
            out.append(f"  {key} [{count}/{total}]")
    return out


def info_lines(stats: Mapping[str, Mapping[str, Any]]) -> list[str]:
    out: list[str] = []
    for section in sorted(stats):
        out.append(f"{section}:")
        out += [f"\t{k} = {v}" for k, v in sorted(stats[section].items())]
    return out


# ---------------------------------------------------------------- verbs


def _parse(fs: FlagSet, args: Sequence[str], synopsis: str, description: str) -> ParseResult:
    help_text = f"Usage: pyconsul {synopsis}\n\n  {description}\n"
    if fs.flags:
        help_text += "\nOptions:\n\n" + fs.usage()
    try:
        return fs.parse(args)
    except HelpRequested:
        sys.stdout.write(help_text)
        raise _Exit(0) from None
    except FlagError as exc:
        sys.stderr.write(f"{exc}\n\n{help_text}")
        raise _Exit(1) from None


def _http_flags(fs: FlagSet) -> None:
    fs.string("http-addr", default_http_addr(),
              "Address of the agent's HTTP API: host:port or http://host:port. "
              "Defaults to $CONSUL_HTTP_ADDR, then $PYCONSUL_HTTP_ADDR.")
    fs.string("token", "", "ACL token (accepted and ignored).")


def _server_flags(fs: FlagSet) -> None:
    """Consul's "server" flags, shared by the verbs that read from the servers."""
    fs.string("datacenter", "", "Name of the datacenter to query. If unspecified, this will default to the "
              "datacenter of the queried agent.")
    fs.bool("stale", False, "Permit any Consul server (non-leader) to respond to this request. This allows for "
            "lower latency and higher throughput, but can result in stale data. This option has no effect on "
            "non-read operations. The default value is false.")


def server_query(res: ParseResult, *, read: bool = True) -> dict[str, str]:
    """`dc` and (for reads) `stale` query parameters from the flags of `_server_flags`."""
    query = {"dc": res.str("datacenter")} if res.str("datacenter") else {}
    if read and res.bool("stale"):
        query["stale"] = ""
    return query


def run_group(name: str, table: Mapping[str, tuple[Callable[[Sequence[str]], int], str]],
              args: Sequence[str], description: str) -> int:
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


def _no_positional(res: ParseResult, verb: str) -> None:
    if res.positional:
        raise CLIError(f"Error: {verb} takes no arguments, got {res.positional[0]!r}")


def _out(lines: Sequence[str]) -> None:
    for line in lines:
        print(line)


def cmd_agent(args: Sequence[str]) -> int:
    res = _parse(agent_flagset(), args, "agent [options]", "Starts a pyconsul agent and runs until stopped.")
    _no_positional(res, "agent")
    cfg, warnings = build_config(res.explicit)
    for w in warnings:
        print(f"==> WARNING: {w}", file=sys.stderr)
    from agent.agent import run_agent  # lazy: the runtime is heavy and optional for other verbs

    return run_agent(cfg)


def cmd_members(args: Sequence[str]) -> int:
    fs = FlagSet("members")
    _http_flags(fs)
    fs.bool("wan", False, "List the WAN pool (servers of all datacenters) instead of the LAN pool.")
    fs.bool("detailed", False, "Show every tag of each member.")
    fs.string("status", "", "Only show members whose status matches this regular expression.")
    fs.string("segment", "", "Only show members of this network segment (_all for all).")
    res = _parse(fs, args, "members [options]", "Lists the members of the cluster as seen by an agent.")
    _no_positional(res, "members")
    try:
        table_filter = re.compile(res.str("status")) if res.str("status") else None
    except re.error as exc:
        raise CLIError(f"Failed to compile status regexp: {exc}") from None
    query = {"wan": "1"} if res.bool("wan") else {}
    if res.str("segment"):
        query["segment"] = res.str("segment")
    try:
        members = api_request("GET", parse_http_addr(res.str("http-addr")), "/v1/agent/members", query=query)
    except ApiError as exc:
        raise CLIError(f"Error retrieving members: {exc}") from None
    if not isinstance(members, list):
        raise CLIError(f"Error retrieving members: unexpected response {members!r}")
    lines = members_table(members, detailed=res.bool("detailed"),
                          status=table_filter.pattern if table_filter else None)
    if not lines:
        return 2
    _out(lines)
    return 0


def cmd_join(args: Sequence[str]) -> int:
    fs = FlagSet("join")
    _http_flags(fs)
    fs.bool("wan", False, "Join the WAN pool (servers only).")
    res = _parse(fs, args, "join [options] address ...", "Tells a running agent to join the cluster through "
                 "one or more existing members.")
    if not res.positional:
        raise CLIError("At least one address to join must be specified.")
    base = parse_http_addr(res.str("http-addr"))
    query = {"wan": "1"} if res.bool("wan") else None
    joined = 0
    for addr in res.positional:
        try:
            api_request("PUT", base, "/v1/agent/join/" + urllib.parse.quote(addr, safe=":[]"), query=query)
            joined += 1
        except ApiError as exc:
            print(f"Error joining address '{addr}': {exc}", file=sys.stderr)
    if joined == 0:
        raise CLIError("Failed to join any nodes.")
    print(f"Successfully joined cluster by contacting {joined} nodes.")
    return 0


def cmd_leave(args: Sequence[str]) -> int:
    fs = FlagSet("leave")
    _http_flags(fs)
    res = _parse(fs, args, "leave [options]", "Makes the agent leave the cluster gracefully and shut down.")
    _no_positional(res, "leave")
    try:
        api_request("PUT", parse_http_addr(res.str("http-addr")), "/v1/agent/leave")
    except ApiError as exc:
        raise CLIError(f"Error leaving: {exc}") from None
    print("Graceful leave complete")
    return 0


def cmd_force_leave(args: Sequence[str]) -> int:
    fs = FlagSet("force-leave")
    _http_flags(fs)
    fs.bool("prune", False, "Remove the node from the member list entirely instead of marking it left.")
    fs.bool("wan", False, "Act on the WAN pool.")
    res = _parse(fs, args, "force-leave [options] name", "Moves a failed member to the left state.")
    if len(res.positional) != 1:
        raise CLIError("A single node name must be specified to force leave.")
    query = {k: "1" for k in ("prune", "wan") if res.bool(k)}
    path = "/v1/agent/force-leave/" + urllib.parse.quote(res.positional[0], safe="")
    try:
        api_request("PUT", parse_http_addr(res.str("http-addr")), path, query=query)
    except ApiError as exc:
        raise CLIError(f"Error force leaving: {exc}") from None
    return 0


def cmd_keygen(args: Sequence[str]) -> int:
    res = _parse(FlagSet("keygen"), args, "keygen", "Prints a new random 32-byte gossip encryption key.")
    _no_positional(res, "keygen")
    print(base64.b64encode(secrets.token_bytes(32)).decode())
    return 0


def cmd_keyring(args: Sequence[str]) -> int:
    fs = FlagSet("keyring")
    _http_flags(fs)
    fs.bool("list", False, "List the keys installed in every pool.")
    fs.string("install", "", "Install a new key; it is used for decryption until made primary.")
    fs.string("use", "", "Make an installed key the primary (encryption) key.")
    fs.string("remove", "", "Remove a key; the primary key cannot be removed.")
    fs.int("relay-factor", 0, "Number of extra members (0-5) that relay each reply.")
    res = _parse(fs, args, "keyring [options]", "Manages the gossip encryption keys of the cluster.")
    _no_positional(res, "keyring")
    ops = [op for op in ("list", "install", "use", "remove") if op in res.explicit and res.values[op]]
    if len(ops) != 1:
        raise CLIError("Exactly one of -list, -install, -use or -remove must be given.")
    relay = res.int("relay-factor")
    if not 0 <= relay <= 5:
        raise CLIError("Relay factor must be in range: [0, 5]")
    base = parse_http_addr(res.str("http-addr"))
    query = {"relay-factor": str(relay)} if relay else None
    op = ops[0]
    try:
        if op == "list":
            data = api_request("GET", base, "/v1/operator/keyring", query=query)
            if not isinstance(data, list):
                raise CLIError(f"Error: unexpected response {data!r}")
            _out(keyring_lines(data))
            return 0
        method, banner = {"install": ("POST", "Installing new gossip encryption key..."),
                          "use": ("PUT", "Changing primary gossip encryption key..."),
                          "remove": ("DELETE", "Removing gossip encryption key...")}[op]
        print(f"==> {banner}")
        api_request(method, base, "/v1/operator/keyring", query=query, body={"Key": res.str(op)})
    except ApiError as exc:
        raise CLIError(f"Error: {exc}") from None
    return 0


def cmd_info(args: Sequence[str]) -> int:
    fs = FlagSet("info")
    _http_flags(fs)
    res = _parse(fs, args, "info [options]", "Prints the agent's runtime statistics for operators.")
    _no_positional(res, "info")
    try:
        data = api_request("GET", parse_http_addr(res.str("http-addr")), "/v1/agent/self")
    except ApiError as exc:
        raise CLIError(f"Error querying agent: {exc}") from None
    stats = data.get("Stats") if isinstance(data, dict) else None
    if not isinstance(stats, dict):
        raise CLIError("Error querying agent: response has no Stats")
    _out(info_lines(stats))
    return 0


def version_lines() -> list[str]:
    return [f"Pyconsul v{__version__}",
            "Protocol 2 spoken by default, understands 2 to 3 (agent will automatically use protocol >2 "
            "when speaking to compatible agents)"]


def cmd_version(args: Sequence[str]) -> int:
    res = _parse(FlagSet("version"), args, "version", "Prints the pyconsul version.")
    _no_positional(res, "version")
    _out(version_lines())
    return 0


def cmd_validate(args: Sequence[str]) -> int:
    fs = FlagSet("validate")
    fs.bool("quiet", False, "Print nothing when the configuration is valid.")
    res = _parse(fs, args, "validate [options] FILE_OR_DIRECTORY...",
                 "Checks agent configuration files the way `agent` would load them, without starting one.")
    if not res.positional:
        raise CLIError("Must specify at least one config file or directory")
    try:
        _, warnings = validate_paths(res.positional)
    except ConfigError as exc:
        raise CLIError(f"Config validation failed: {exc}") from None
    if not res.bool("quiet"):
        for w in warnings:
            print(f"==> WARNING: {w}", file=sys.stderr)
        print("Configuration is valid!")
    return 0


def cmd_kv(args: Sequence[str]) -> int:
    from agent.cli_kv import cmd_kv as run  # lazy: cli_kv imports this module

    return run(args)


def cmd_catalog(args: Sequence[str]) -> int:
    from agent.cli_operator import cmd_catalog as run

    return run(args)


def cmd_operator(args: Sequence[str]) -> int:
    from agent.cli_operator import cmd_operator as run

    return run(args)


def cmd_snapshot(args: Sequence[str]) -> int:
    from agent.cli_snapshot import cmd_snapshot as run

    return run(args)


COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "agent": (cmd_agent, "Runs a pyconsul agent"),
    "catalog": (cmd_catalog, "Interact with the catalog"),
    "force-leave": (cmd_force_leave, "Moves a failed member of the cluster to the left state"),
    "info": (cmd_info, "Shows runtime statistics of the local agent"),
    "join": (cmd_join, "Makes the local agent join a cluster"),
    "keygen": (cmd_keygen, "Generates a new gossip encryption key"),
    "keyring": (cmd_keyring, "Lists, installs, selects and removes gossip encryption keys"),
    "kv": (cmd_kv, "Interact with the key-value store"),
    "leave": (cmd_leave, "Makes the local agent leave the cluster gracefully and exit"),
    "members": (cmd_members, "Lists the members of the cluster"),
    "operator": (cmd_operator, "Provides cluster-level tools for Consul operators"),
    "snapshot": (cmd_snapshot, "Saves, restores and inspects snapshots of the servers' state"),
    "validate": (cmd_validate, "Checks configuration files"),
    "version": (cmd_version, "Prints the pyconsul version"),
}


def usage() -> str:
    width = max(len(n) for n in COMMANDS) + 4
    lines = ["Usage: pyconsul [--version] [--help] <command> [<args>]", "", "Available commands are:"]
    lines += [f"    {name.ljust(width)} {text}" for name, (_, text) in sorted(COMMANDS.items())]
    return "\n".join(lines) + "\n"


def run(argv: Sequence[str]) -> int:
    """Dispatch one command line (without the program name); may raise CLIError/ConfigError."""
    if not argv:
        sys.stderr.write(usage())
        return 1
    verb, rest = argv[0], list(argv[1:])
    if verb in ("-h", "-help", "--help", "help"):
        sys.stdout.write(usage())
        return 0
    if verb in ("-v", "-version", "--version"):
        _out(version_lines())
        return 0
    entry = COMMANDS.get(verb)
    if entry is None:
        sys.stderr.write(f"Error: unknown command {verb!r}\n\n{usage()}")
        return 1
    return entry[0](rest)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the process exit code and never raises (except SystemExit)."""
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except _Exit as exc:
        return exc.code
    except (CLIError, ConfigError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:
        print(f"Error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
