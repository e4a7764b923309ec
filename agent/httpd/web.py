"""A tiny web framework: applications, routing, requests and responses.

`Application(middlewares=[...], client_max_size=N, max_buffered=M)`,
`app.router.add_get/add_put/add_post/add_delete` with literal segments, `{name}` (one segment) and
`{name:regex}` (`{key:.*}`: the rest of the path, possibly empty or with slashes); `Request` (decoded
`path`, `match_info`, `query`, case-insensitive `headers`, `content_length`, `await read()`), `Response`,
the `HTTPException` family and `(request, handler)` middlewares. The HTTP/1.1 server that runs it is
`agent.httpd.h1`.

Body limits: a route may set its own `max_body` (`add_put(path, handler, max_body=N)`); other routes
take the application's `client_max_size`. The server resolves the route from the request head, so a
body above the route's limit is never read (`read()` raises 413; the handler sees `content_length`).
`max_buffered` caps the bytes of request bodies the server holds at once, over all connections.
A route added with `spool=True` receives its body in a temporary file instead (written by worker threads while
it arrives, at most `max_body` bytes; see h1.py): its handler reads it with `request.body_file()`, never `read()`.
Such a request first passes the application's `head_check` (if set), from its head alone, before any body byte is
read or stored: `await app.head_check(request)` returns None to go on or a Response that refuses the request (the
Consul API's checks the token's ACL rights there, so an anonymous client cannot make the agent store a body).

Paths: the request path is percent-decoded to bytes and then decoded as UTF-8 with surrogateescape,
so distinct byte strings stay distinct strings (`/a%ff` and `/a%fe` are two paths; never U+FFFD).
`path_bytes(s)` gives the bytes back. Query values are decoded the same way.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import IO, TYPE_CHECKING
from urllib.parse import parse_qsl, unquote_to_bytes

if TYPE_CHECKING:
    from pyconsul.agent.httpd.h1 import Spool

__all__ = [
    "Application", "HTTPException", "HTTPMethodNotAllowed", "HTTPNotFound", "HTTPRequestEntityTooLarge",
    "Handler", "HeadCheck", "Headers", "Middleware", "Query", "Request", "Response", "Router", "StreamResponse",
    "decode_path", "path_bytes",
]

REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 301: "Moved Permanently",
    302: "Found", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 411: "Length Required",
    412: "Precondition Failed", 413: "Payload Too Large", 414: "URI Too Long", 415: "Unsupported Media Type",
    417: "Expectation Failed", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

def decode_path(path: str) -> str:
    """A request path, percent-decoded: UTF-8 with surrogateescape, so undecodable bytes stay distinct."""
    if "%" not in path:
        return path
    return unquote_to_bytes(path).decode("utf-8", "surrogateescape")


def path_bytes(path: str) -> bytes:
    """The bytes a decoded path (or part of it, e.g. a match_info value) stands for."""
    return path.encode("utf-8", "surrogateescape")


_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*))?\}")


class HTTPException(Exception):
    """Raise from a handler to answer with `status` and a plain-text body."""

    status = 500

    def __init__(self, text: str | None = None, *, headers: Mapping[str, str] | None = None) -> None:
        self.text = text if text is not None else f"{self.status} {REASONS.get(self.status, '')}\n"
        self.headers = dict(headers) if headers else {}
        super().__init__(self.text)

    def response(self) -> Response:
        return Response(status=self.status, text=self.text, headers=self.headers)


class HTTPNotFound(HTTPException):
    status = 404

    def __init__(self, text: str | None = None, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__("404 page not found\n" if text is None else text, headers=headers)  # Go's http.NotFound


class HTTPMethodNotAllowed(HTTPException):
    status = 405

    def __init__(self, method: str, allowed: Iterable[str]) -> None:
        self.allowed = sorted(allowed)
        super().__init__(f"method {method} not allowed\n", headers={"Allow": ", ".join(self.allowed)})


class HTTPRequestEntityTooLarge(HTTPException):
    status = 413


class Response:
    """A complete response. `text` is sent as UTF-8 (`text/plain; charset=utf-8` unless `content_type`)."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, *, status: int = 200, text: str | None = None, body: bytes | None = None,
                 headers: Mapping[str, str] | None = None, content_type: str | None = None) -> None:
        if text is not None and body is not None:
            raise ValueError("only one of text and body may be given")
        self.status = status
        self.headers: dict[str, str] = dict(headers) if headers else {}
        if text is not None:
            self.body = _utf8(text)
            self.headers["Content-Type"] = f"{content_type or 'text/plain'}; charset=utf-8"
        else:
            self.body = bytes(body) if body else b""
            if content_type is not None:
                self.headers["Content-Type"] = content_type
            elif self.body and "Content-Type" not in self.headers:
                self.headers["Content-Type"] = "application/octet-stream"


class StreamResponse(Response):
    """A response whose body an async iterator of byte chunks produces while it is being sent.

    The server writes the head at once, then each chunk as it comes (chunked transfer coding; to an
    HTTP/1.0 client the body simply ends with the connection), and closes the connection after it. It
    stops iterating, and closes the iterator, when the client goes away or the server shuts down, and
    waits while the client reads slower than we write (a client that reads nothing for the keep-alive
    timeout is dropped). The iterator's own buffering decides what happens to data produced meanwhile.
    """

    __slots__ = ("chunks",)

    def __init__(self, chunks: AsyncIterator[bytes], *, status: int = 200, headers: Mapping[str, str] | None = None,
                 content_type: str | None = None) -> None:
        super().__init__(status=status, headers=headers, content_type=content_type)
        self.chunks = chunks


def _utf8(text: str) -> bytes:
    """UTF-8; a path's undecodable bytes (lone surrogates from decode_path) go out as those bytes, and
    any other lone surrogate as U+FFFD, so echoing a request's path in a message never fails."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return "".join(c if not "\ud800" <= c <= "\udfff" or "\udc80" <= c <= "\udcff" else "\ufffd"
                       for c in text).encode("utf-8", "surrogateescape")


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive request headers; a repeated field's values are joined with ", "."""

    __slots__ = ("_d",)

    def __init__(self, fields: dict[str, str]) -> None:
        self._d = fields  # keys already lower-case

    def __getitem__(self, key: str) -> str:
        return self._d[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._d

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)


class Query(Mapping[str, str]):
    """Read-only query parameters: `q[name]` is the first value, `getall(name)` all; `?flag` maps to ""."""

    __slots__ = ("_first", "_pairs")

    def __init__(self, qs: str) -> None:
        self._pairs = parse_qsl(qs, keep_blank_values=True, errors="surrogateescape") if qs else []
        self._first: dict[str, str] = {}
        for k, v in self._pairs:
            self._first.setdefault(k, v)

    def __getitem__(self, key: str) -> str:
        return self._first[key]

    def __contains__(self, key: object) -> bool:  # hot: flag() checks several names per request
        return key in self._first

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def getall(self, key: str) -> list[str]:
        return [v for k, v in self._pairs if k == key]


class Request:
    """One parsed request. `path` and `match_info` are percent-decoded (see decode_path); the body is
    already received. `max_body` is the limit of its route (or the application's client_max_size)."""

    __slots__ = ("_body", "_handler", "_max", "_query", "_reserved", "_route_error", "_spool", "_too_large", "app",
                 "content_length", "headers", "keep_alive", "match_info", "method", "path", "query_string",
                 "raw_path", "remote", "version")

    def __init__(self, app: Application, method: str, raw_path: str, version: tuple[int, int],
                 headers: Headers, remote: str | None) -> None:
        self.app, self.method, self.version, self.headers, self.remote = app, method, version, headers, remote
        self.raw_path = raw_path
        path, _, self.query_string = raw_path.partition("?")
        self.path = decode_path(path)
        self.match_info: dict[str, str] = {}
        self.content_length: int | None = None
        self.keep_alive = True
        self._body = b""
        self._too_large = False
        self._max = app.client_max_size
        self._query: Query | None = None
        self._handler: Handler | None = None  # resolved from the head by the server
        self._route_error: HTTPException | None = None  # 404 / 405, answered without running a handler
        self._reserved = 0  # body bytes counted against the application's max_buffered
        self._spool: Spool | None = None  # the body, on a spool=True route (h1.py)

    @property
    def max_body(self) -> int:
        return self._max

    @property
    def query(self) -> Query:
        if self._query is None:
            self._query = Query(self.query_string)
        return self._query

    async def read(self) -> bytes:
        """The whole body; 413 if it is larger than the application's client_max_size."""
        if self._too_large:
            raise HTTPRequestEntityTooLarge(f"Request body too large, max size: {self._max} bytes\n")
        if self._spool is not None:
            raise RuntimeError("a spooled request body is read with body_file()")
        return self._body

    def body_file(self) -> IO[bytes]:
        """The whole body as a binary file at its start; 413 if it is larger than the route's max_body. On a
        spool=True route it is a temporary file (possibly on disk: read it in a worker thread), valid until the
        handler returns."""
        if self._too_large:
            raise HTTPRequestEntityTooLarge(f"Request body too large, max size: {self._max} bytes\n")
        if self._spool is not None:
            f = self._spool.file
            f.seek(0)
            return f
        return io.BytesIO(self._body)


Handler = Callable[[Request], Awaitable[Response]]
Middleware = Callable[[Request, Handler], Awaitable[Response]]
HeadCheck = Callable[[Request], Awaitable["Response | None"]]  # None: go on; a Response: the refusal to send


class Router:
    """Literal paths, `{name}` (one segment) and `{name:regex}` (e.g. `{key:.*}`: the rest, maybe empty).

    A literal path wins over patterns; patterns are tried in registration order. GET also serves HEAD.
    A route's `max_body` (None: the application's client_max_size) is its request-body limit.
    """

    def __init__(self, wrap: Callable[[Handler], Handler]) -> None:
        self._wrap = wrap
        self._exact: dict[str, dict[str, Handler]] = {}
        self._patterns: list[tuple[str, re.Pattern[str], dict[str, Handler]]] = []
        self._max_body: dict[tuple[str, str], int] = {}  # (route path, method) -> its body limit
        self._spool: set[tuple[str, str]] = set()  # (route path, method) whose bodies go to a temporary file

    def add_route(self, method: str, path: str, handler: Handler, *, max_body: int | None = None,
                  spool: bool = False) -> None:
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        if "{" not in path:
            table = self._exact.setdefault(path, {})
        else:
            for pat, _, t in self._patterns:
                if pat == path:
                    table = t
                    break
            else:
                table = {}
                self._patterns.append((path, _compile(path), table))
        method = method.upper()
        if method in table:
            raise ValueError(f"duplicate route {method} {path}")
        table[method] = self._wrap(handler)
        if max_body is not None:
            if max_body < 0:
                raise ValueError(f"max_body must be >= 0: {max_body}")
            self._max_body[path, method] = max_body
        if spool:
            if max_body is None:
                raise ValueError("a spool=True route needs its max_body")
            self._spool.add((path, method))
        if method == "GET" and "HEAD" not in table:
            table["HEAD"] = table["GET"]
            if max_body is not None:
                self._max_body[path, "HEAD"] = max_body

    def add_get(self, path: str, handler: Handler, *, max_body: int | None = None) -> None:
        self.add_route("GET", path, handler, max_body=max_body)

    def add_put(self, path: str, handler: Handler, *, max_body: int | None = None, spool: bool = False) -> None:
        self.add_route("PUT", path, handler, max_body=max_body, spool=spool)

    def add_post(self, path: str, handler: Handler, *, max_body: int | None = None) -> None:
        self.add_route("POST", path, handler, max_body=max_body)

    def add_delete(self, path: str, handler: Handler, *, max_body: int | None = None) -> None:
        self.add_route("DELETE", path, handler, max_body=max_body)

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler and match_info; raises HTTPNotFound or HTTPMethodNotAllowed."""
        handler, match_info, _ = self.match(method, path)
        return handler, match_info

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str], int | None]:
        """The handler, match_info and the route's max_body (None: the application's); raises
        HTTPNotFound or HTTPMethodNotAllowed."""
        handler, match_info, limit, _ = self.match_route(method, path)
        return handler, match_info, limit

    def match_route(self, method: str, path: str) -> tuple[Handler, dict[str, str], int | None, bool]:
        """match() and whether the route spools its body to a temporary file."""
        allowed: set[str] = set()
        table = self._exact.get(path)
        if table is not None:
            h = table.get(method)
            if h is not None:
                if not self._max_body:
                    return h, {}, None, False
                return h, {}, self._max_body.get((path, method)), (path, method) in self._spool
            allowed.update(table)
        for pat, rx, table in self._patterns:
            m = rx.fullmatch(path)
            if m is not None:
                h = table.get(method)
                if h is not None:
                    if not self._max_body:
                        return h, m.groupdict(), None, False
                    return h, m.groupdict(), self._max_body.get((pat, method)), (pat, method) in self._spool
                allowed.update(table)
        if allowed:
            raise HTTPMethodNotAllowed(method, allowed)
        raise HTTPNotFound()


def _compile(path: str) -> re.Pattern[str]:
    out, pos = [], 0
    for m in _VAR.finditer(path):
        out.append(re.escape(path[pos : m.start()]))
        out.append(f"(?P<{m.group(1)}>{m.group(2) or '[^{}/]+'})")
        pos = m.end()
    out.append(re.escape(path[pos:]))
    return re.compile("".join(out), re.DOTALL)


class Application:
    def __init__(self, *, middlewares: Iterable[Middleware] = (), client_max_size: int = 1024 * 1024,
                 max_buffered: int = 128 * 1024 * 1024) -> None:
        self.middlewares = tuple(middlewares)
        self.client_max_size = client_max_size  # the body limit of routes without their own max_body
        self.max_buffered = max_buffered  # request-body bytes held at once, all connections together
        self.router = Router(self._wrap)
        # run on a spool=True route's request from its head, before its body is read (see the module docstring)
        self.head_check: HeadCheck | None = None

    def _wrap(self, handler: Handler) -> Handler:
        for mw in reversed(self.middlewares):
            handler = _bind(mw, handler)
        return handler


def _bind(mw: Middleware, inner: Handler) -> Handler:
    def call(request: Request) -> Awaitable[Response]:
        return mw(request, inner)

    return call
