"""`/v1/snapshot`: GET saves the whole state as an archive (state/archive.py); PUT restores one.

GET honours `?stale` (any server answers from its own state) and otherwise reads from the leader,
like Consul; the response carries X-Consul-Index. PUT verifies the archive completely before anything
is written -- a corrupt or foreign archive gets a 400 naming the problem and the state is untouched --
then commits a Restore command through Raft, so every server switches to the snapshot at one index.

Limits (README "Limits"): the uploaded archive is at most MAX_ARCHIVE bytes (the route's body limit,
checked from Content-Length before reading), and it inflates to at most archive.MAX_STATE bytes of
state: the archive is inflated as a stream, in a worker thread (the event loop keeps serving), one
restore at a time, and a decompression bomb is refused at its first oversized tar header. The Restore
command carries the whole state in ONE Raft entry, so a state over wire.MAX_ENTRY (63 MiB) is refused
with a 400 before anything is proposed: an entry that cannot fit in a frame could never reach the
followers (Raft snapshots of any size do stream; only restores through the log are bounded).
"""

from __future__ import annotations

import asyncio
import time

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.http.api import Backend, body_too_large, read_meta_headers, read_query
from pyconsul.agent.httpd import web
from pyconsul.agent.raft import wire
from pyconsul.agent.state import archive
from pyconsul.agent.state import commands as c

MAX_ARCHIVE = 64 * 1024 * 1024  # PUT /v1/snapshot body (compressed archive)


def register(app: web.Application, backend: Backend) -> None:
    one_restore = asyncio.Lock()  # verifying an archive holds up to MAX_STATE bytes: one at a time

    async def save(request: web.Request) -> web.Response:
        value, meta = await read_query(request, backend, "snapshot", {})
        # compressing (seconds for hundreds of MiB) runs in a worker thread: the loop keeps serving
        data = await asyncio.to_thread(archive.write_archive, value["state"], int(value["index"]),
                                       int(value.get("term", 0)), int(time.time() * 1000))
        return web.Response(body=data, headers=read_meta_headers(meta), content_type="application/x-gzip")

    async def restore(request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return body_too_large(request, MAX_ARCHIVE)
        if not body:
            raise BadRequest("Missing snapshot archive in the request body")
        async with one_restore:
            try:
                _, state = await asyncio.to_thread(archive.read_archive, body)
            except archive.ArchiveError as exc:
                raise BadRequest(f"Invalid snapshot: {exc}") from None
        del body
        if len(state) > wire.MAX_ENTRY:
            raise BadRequest(f"Invalid snapshot: its state is {len(state)} bytes; a restore travels through the "
                             f"Raft log as one entry of at most {wire.MAX_ENTRY} bytes")
        await backend.write(c.encode(c.Restore(state)))  # a rejected restore raises CommandRejected
        return web.Response(status=200)

    app.router.add_get("/v1/snapshot", save)
    app.router.add_put("/v1/snapshot", restore, max_body=MAX_ARCHIVE)
