"""`pyconsul monitor [-log-level=LEVEL] [-log-json]`: stream the agent's log (`GET /v1/agent/monitor`).

Lines are printed as the agent sends them, until SIGINT/SIGTERM (exit 0) or the agent ends the stream
(exit 1, with Consul's message). The agent may drop lines for a reader that falls behind; it says how
many in the stream.
"""

from __future__ import annotations

import signal
import sys
import urllib.parse
from collections.abc import Sequence
from types import FrameType

from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import CLIError
from pyconsul.agent.flags import FlagSet

ENDED = "Remote side ended the monitor! This usually means that the\nremote side has exited or crashed."


class _Stop(BaseException):
    pass


def cmd_monitor(args: Sequence[str]) -> int:
    fs = FlagSet("monitor")
    common.http_flags(fs)
    fs.string("log-level", "INFO", "Log level of the agent (TRACE, DEBUG, INFO, WARN, ERR). The stream may be "
              "more verbose than the agent's own log.")
    fs.bool("log-json", False, "Output logs in JSON format.")
    res = common.parse(
        fs, args, "monitor [options]",
        "Attaches to an agent and prints its log messages as they occur (earlier ones are not shown). The\n"
        "  monitor lets you listen for log levels that may be filtered out of the agent's own log: your agent\n"
        "  may only be logging at INFO level, but with the monitor you can see the DEBUG level logs. If this\n"
        "  reader falls behind, the agent drops lines and says how many. Ends with SIGINT/SIGTERM (exit 0) or\n"
        "  when the agent ends the stream (exit 1).")
    common.no_positional(res, "monitor")
    query = {"loglevel": res.str("log-level").lower()}
    if res.bool("log-json"):
        query["logjson"] = "true"
    url = common.http_addr(res) + "/v1/agent/monitor?" + urllib.parse.urlencode(sorted(query.items()))

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _stream(url)
    except _Stop:
        return 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _stream(url: str) -> int:
    import http.client
    import urllib.error
    import urllib.request

    try:
        resp = common.opener().open(urllib.request.Request(url, method="GET"), timeout=30.0)
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace").strip()
        raise CLIError(f"Error starting monitor: Unexpected response code: {exc.code} ({text})") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise CLIError(f"Error starting monitor: {common.dial_error('GET', url, reason)}") from None
    with resp:
        sock = getattr(getattr(getattr(resp, "fp", None), "raw", None), "_sock", None)
        if sock is not None:
            sock.settimeout(None)  # a quiet agent may log nothing for a long time
        try:
            for raw in resp:
                sys.stdout.write(raw.decode("utf-8", "replace"))
                sys.stdout.flush()
        except (OSError, http.client.HTTPException):  # the agent went away mid-chunk
            pass
    print(f"\n{ENDED}")
    return 1


COMMANDS: common.Table = {
    "monitor": (cmd_monitor, "Stream logs from a Consul agent"),
}
