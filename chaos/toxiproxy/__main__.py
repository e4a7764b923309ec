"""`pyconsul-chaos toxiproxy` (also `python -m pyconsul.chaos.toxiproxy`): serve the Toxiproxy 2.x API.

    pyconsul-chaos toxiproxy [--listen HOST:PORT] [--config FILE] [--seed N]

--listen   the API address (default 127.0.0.1:8474, Toxiproxy's port; port 0 picks a free one)
--config   a JSON list of proxies to create at start, as Toxiproxy's `-config` (same format as
           POST /populate); a bad file stops the server with the file and the reason
--seed     seed of the random numbers (toxicity rolls, jitter, slicer cuts) for repeatable runs

Prints one line `toxiproxy API listening on HOST:PORT` on stderr once it serves; SIGINT or SIGTERM
closes every proxy and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import sys
from collections.abc import Sequence

from pyconsul.agent.httpd.h1 import serve
from pyconsul.chaos.toxiproxy.api import make_app
from pyconsul.chaos.toxiproxy.proxy import ProxyCollection, join_hostport, split_hostport
from pyconsul.chaos.toxiproxy.toxics import ApiError, parse_populate


async def _serve(listen: str, config: str | None, seed: int | None) -> int:
    proxies = ProxyCollection(random.Random(seed))
    if config:
        try:
            with open(config, encoding="utf-8") as f:
                specs = parse_populate(f.read())
            for spec in specs:
                await proxies.add_or_replace(spec)
        except OSError as exc:
            print(f"pyconsul-chaos toxiproxy: {config}: {exc.strerror or exc}", file=sys.stderr)
            await proxies.close()
            return 2
        except ApiError as exc:
            print(f"pyconsul-chaos toxiproxy: {config}: {exc.message}", file=sys.stderr)
            await proxies.close()
            return 2
    host, port = split_hostport(listen)
    try:
        server = await serve(make_app(proxies), host, port)
    except OSError as exc:
        print(f"pyconsul-chaos toxiproxy: cannot listen on {listen}: {exc.strerror or exc}", file=sys.stderr)
        await proxies.close()
        return 2
    bound = server.sockets[0].getsockname() if hasattr(server, "sockets") else (host, port)
    print(f"toxiproxy API listening on {join_hostport(bound[0], bound[1])}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    with contextlib.suppress(Exception):
        await server.close()
    await proxies.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pyconsul-chaos toxiproxy", description="Serve the Toxiproxy 2.x HTTP API.")
    ap.add_argument("--listen", default="127.0.0.1:8474", help="API address HOST:PORT (default %(default)s)")
    ap.add_argument("--config", help="JSON list of proxies to create at start (Toxiproxy's -config)")
    ap.add_argument("--seed", type=int, help="random seed (toxicity, jitter, slicer)")
    ap.add_argument("--log-level", default="WARNING", type=str.upper,
                    choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")
    try:
        split_hostport(args.listen)
    except ApiError:
        print(f"pyconsul-chaos toxiproxy: --listen {args.listen}: expected HOST:PORT", file=sys.stderr)
        return 2
    return asyncio.run(_serve(args.listen, args.config, args.seed))


if __name__ == "__main__":
    raise SystemExit(main())
