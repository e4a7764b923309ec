"""`/v1/snapshot`: GET saves the whole state as an archive (state/archive.py); PUT restores one.

GET honours `?stale` (any server answers from its own state) and otherwise reads from the leader,
like Consul; the response carries X-Consul-Index, and its body is compressed piece by piece in a worker
thread and sent chunked as it is produced (archive.archive_chunks; Connection: close). PUT verifies the
archive completely before anything is written -- a corrupt or foreign archive gets a 400 naming the
problem and the state is untouched -- then commits a Restore command through Raft, so every server
switches to the snapshot at one index.

ACLs: both need snapshot rights (a management token; http/authz.py). A PUT is checked from its head, before any
of its body is read or spooled (the app's head_check, agent/http/server.py and agent/httpd/h1.py): a token
without the rights gets 403 "Permission denied" and the connection closes, nothing of the upload stored.

Limits (README "Limits"): the uploaded archive is at most MAX_ARCHIVE bytes (the route's body limit,
checked from Content-Length before reading; a chunked upload is cut there). The server spools it to a
temporary file as it arrives (agent/httpd/h1.py: in memory up to 1 MiB, then on disk, written by worker
threads) and the restore reads that file in a worker thread, so the archive is never held in memory. It
inflates to at most archive.MAX_STATE bytes of state: the archive is inflated as a stream, in a worker
thread (the event loop keeps serving), one restore at a time, and a decompression bomb is refused at its
first oversized tar header. A state larger than one piece (4 MiB) is committed as consecutive Restore
pieces by the leader (state/restore.py), so a restore of any size up to archive.MAX_STATE reaches every server and each
switches to it at the last piece's index; on a follower or a client agent the Restore command is
forwarded to the leader over server RPC, streamed in frames of 4 MiB (agent/raft/wire.py).
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator, Iterator
from types import ModuleType

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.http.api import Backend, body_too_large, read_meta_headers, read_query
from pyconsul.agent.httpd import web
from pyconsul.agent.state import commands as c

MAX_ARCHIVE = 1024 * 1024 * 1024  # PUT /v1/snapshot body (compressed archive), spooled to a temporary file


async def _in_thread(gen: Iterator[bytes]) -> AsyncIterator[bytes]:
    """The pieces of a CPU-bound generator, each produced in a worker thread."""
    while True:
        chunk = await asyncio.to_thread(next, gen, None)
        if chunk is None:
            return
        yield chunk


async def _archive() -> ModuleType:
    """state/archive.py, imported (in a worker thread) at the first snapshot request: it brings tarfile, gzip,
    bz2 and lzma, which an agent that never saves or restores a snapshot does not carry (bench/gossip/rss.py)."""
    return await asyncio.to_thread(importlib.import_module, "pyconsul.agent.state.archive")


def register(app: web.Application, backend: Backend) -> None:
    one_restore = asyncio.Lock()  # verifying an archive holds up to MAX_STATE bytes: one at a time

    async def save(request: web.Request) -> web.Response:
        value, meta = await read_query(request, backend, "snapshot", {})
        archive = await _archive()
        # compressed piece by piece in a worker thread (seconds for hundreds of MiB: the loop keeps serving) and
        # sent as it comes (chunked), so neither the tar stream nor the whole archive is ever held
        gen = archive.archive_chunks(value.pop("state"), int(value["index"]), int(value.get("term", 0)),
                                     int(time.time() * 1000))
        return web.StreamResponse(_in_thread(gen), headers=read_meta_headers(meta), content_type="application/x-gzip")

    async def restore(request: web.Request) -> web.Response:
        try:
            body = request.body_file()  # the spooled upload (a temporary file), at its start
        except web.HTTPRequestEntityTooLarge:
            return body_too_large(request, MAX_ARCHIVE)
        if not body.seek(0, 2):  # (its size: an lseek)
            raise BadRequest("Missing snapshot archive in the request body")
        body.seek(0)
        archive = await _archive()
        async with one_restore:
            try:
                _, state = await asyncio.to_thread(archive.read_archive, body)
            except archive.ArchiveError as exc:
                raise BadRequest(f"Invalid snapshot: {exc}") from None
        data = c.encode(c.Restore(state))
        del state
        await backend.write(data)  # a rejected restore raises CommandRejected
        return web.Response(status=200)

    app.router.add_get("/v1/snapshot", save)
    app.router.add_put("/v1/snapshot", restore, max_body=MAX_ARCHIVE, spool=True)
