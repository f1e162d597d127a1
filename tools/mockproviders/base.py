"""HTTP machinery shared by the mock providers: recording, scripting and wire-level misbehaviour.

A mock is a ``MockServer`` subclass that implements four hooks:

* ``validate(request, request_id)`` -- raise ``Rejection`` exactly where the real API would refuse;
* ``default_response(request, request_id)`` -- the realistic success reply (JSON or a stream);
* ``common_headers(request_id)`` / ``new_request_id()`` -- headers the provider puts on every reply;
* ``encode_event(event)`` -- one SSE frame in the provider's framing, for ``StreamEvents``.

Each request consumes one queued action (``enqueue``); an empty queue means ``Default()``.
Validation runs before every action unless the action says ``validate=False``, so a scripted
reply can never hide a malformed request.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import socketserver
import sys
import string
import struct
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Mapping, NamedTuple, Sequence, Union
from urllib.parse import parse_qs, urlsplit

BASE62 = string.digits + string.ascii_letters


def random_token(length: int, alphabet: str = BASE62) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class RecordedRequest:
    """One request exactly as the mock received it (recorded even when it was rejected)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", " as HTTP allows
    body: bytes
    json: Any  # the parsed body, or None when it is empty or not JSON


# ----------------------------------------------------------------------------------------------
# Scripted actions
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """Send exactly this status, body and headers (plus the provider's per-reply headers)."""

    status: int
    json_body: Any = None
    body: bytes | None = None
    headers: Mapping[str, str] | None = None
    validate: bool = True

    def __post_init__(self) -> None:
        if self.json_body is not None and self.body is not None:
            raise ValueError("Reply takes json_body or body, not both")


@dataclass(frozen=True)
class Hang:
    """Read the request, send nothing for ``seconds`` (cut short by close()), then close."""

    seconds: float
    validate: bool = True


@dataclass(frozen=True)
class Reset:
    """Abort the TCP connection (RST) without sending a single byte of response."""

    validate: bool = True


@dataclass(frozen=True)
class ResetMidBody:
    """Send the default reply's headers and half its body under a full content-length, then RST."""

    validate: bool = True


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds``, then behave like ``Default``."""

    seconds: float
    validate: bool = True


@dataclass(frozen=True)
class Default:
    """Validate, then send the realistic success reply."""

    validate: bool = True


@dataclass(frozen=True)
class StreamEvents:
    """Stream these events with HTTP 200 and ``text/event-stream``.

    ``events`` is raw SSE bytes, or a sequence whose items are raw bytes or provider events
    (Anthropic: ``(event_name, payload)``; OpenAI: a chunk dict or ``"[DONE]"``). Each item is one
    write, ``delay`` seconds apart. ``then_reset`` cuts the connection (RST) instead of ending the
    chunked body cleanly, which is how an interrupted upstream stream looks to the gateway.
    """

    events: Union[bytes, Sequence[Any]]
    delay: float = 0.0
    then_reset: bool = False
    validate: bool = True


@dataclass(frozen=True)
class StallAfterHeaders:
    """Send the default reply's status and headers, then nothing for ``seconds`` before its body
    (a stream that stalls before its first event)."""

    seconds: float
    validate: bool = True


Action = Union[Reply, Hang, Reset, ResetMidBody, Delay, Default, StreamEvents, StallAfterHeaders]
_ACTION_TYPES = (Reply, Hang, Reset, ResetMidBody, Delay, Default, StreamEvents, StallAfterHeaders)


# ----------------------------------------------------------------------------------------------
# Responses and rejections produced by the provider hooks
# ----------------------------------------------------------------------------------------------


@dataclass
class Response:
    """A reply to write: a complete body, or SSE ``frames`` sent with chunked encoding."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    frames: list[bytes] | None = None
    delay: float = 0.0
    then_reset: bool = False
    # Seconds between the headers and the first byte of body.
    first_delay: float = 0.0

    @classmethod
    def json(cls, status: int, payload: Any, headers: Mapping[str, str], indent: int | None = None) -> Response:
        separators = None if indent else (",", ":")
        body = json.dumps(payload, indent=indent, separators=separators).encode()
        return cls(status, {**headers, "content-type": "application/json"}, body)

    @classmethod
    def stream(cls, frames: list[bytes], headers: Mapping[str, str], delay: float = 0.0,
               then_reset: bool = False) -> Response:
        stream_headers = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
        return cls(200, {**headers, **stream_headers}, frames=frames, delay=delay, then_reset=then_reset)


class Rejection(Exception):
    """Raised by ``validate``: the request is refused with this status and JSON error body."""

    def __init__(self, status: int, body: Any):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


# ----------------------------------------------------------------------------------------------
# Reply text helpers used by both providers' default replies
# ----------------------------------------------------------------------------------------------

_WORD = re.compile(r"\S+")


def estimate_tokens(text: str) -> int:
    """Deterministic stand-in for a tokenizer: one token per whitespace-separated word."""
    return len(_WORD.findall(text))


def word_pieces(text: str) -> list[str]:
    """Split into one piece per word, whitespace kept, so the pieces concatenate back to ``text``
    (how the mocks cut a reply into stream deltas)."""
    return re.findall(r"\s*\S+(?:\s+$)?", text) or ([text] if text else [])


class Truncation(NamedTuple):
    text: str
    reason: str | None  # None, "stop_sequence" or "max_tokens"
    stop_sequence: str | None


def truncate_reply(text: str, stop_sequences: Sequence[str] = (), max_tokens: int | None = None) -> Truncation:
    """Cut ``text`` where a model would have stopped: at the earliest stop sequence, or after
    ``max_tokens`` words if that comes first."""
    reason, matched = None, None
    cut = len(text)
    for sequence in stop_sequences:
        index = text.find(sequence)
        if 0 <= index < cut:
            cut, matched, reason = index, sequence, "stop_sequence"
    text = text[:cut]
    words = list(_WORD.finditer(text))
    if max_tokens is not None and len(words) > max_tokens:
        end = words[max_tokens - 1].end() if max_tokens > 0 else 0
        return Truncation(text[:end], "max_tokens", None)
    return Truncation(text, reason, matched)


# ----------------------------------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------------------------------


class MockServer:
    """A provider mock on 127.0.0.1; subclasses implement the provider hooks."""

    json_indent: int | None = None  # how the provider lays out JSON bodies (OpenAI pretty-prints)

    def __init__(self, port: int = 0):
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._rejections: list[tuple[int, Any]] = []
        self._actions: deque[Action] = deque()
        self._standing: Action | None = None  # what an empty queue means instead of Default()
        self._connections: set[socket.socket] = set()
        self._closing = threading.Event()  # wakes every Hang/Delay/stream pause when set
        self._closed = False
        self._httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.mock = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # close() waits for the loop to notice; keep that short
            name=f"{type(self).__name__}-{self.port}",
            daemon=True,
        )
        self._thread.start()

    # --- public API ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a snapshot copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def rejections(self) -> list[tuple[int, Any]]:
        """``(status, error_json)`` for every request the validator refused (a snapshot copy)."""
        with self._lock:
            return list(self._rejections)

    def enqueue(self, *actions: Action) -> None:
        for action in actions:
            if not isinstance(action, _ACTION_TYPES):
                raise TypeError(f"not a mock action: {action!r}")
        with self._lock:
            self._actions.extend(actions)

    def always(self, action: Action | None) -> None:
        """Perform ``action`` for every request the queue has nothing for (an outage), until
        ``always(None)`` or ``reset()``."""
        if action is not None and not isinstance(action, _ACTION_TYPES):
            raise TypeError(f"not a mock action: {action!r}")
        with self._lock:
            self._standing = action

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._rejections.clear()
            self._actions.clear()
            self._standing = None

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            _shutdown_quietly(connection)  # unblocks handlers parked on a keep-alive read
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- provider hooks ------------------------------------------------------------------------

    def new_request_id(self) -> str | None:
        return None

    def common_headers(self, request_id: str | None) -> dict[str, str]:
        return {}

    def validate(self, request: RecordedRequest, request_id: str | None) -> None:
        raise NotImplementedError

    def default_response(self, request: RecordedRequest, request_id: str | None) -> Response:
        raise NotImplementedError

    def encode_event(self, event: Any) -> bytes:
        raise NotImplementedError

    # --- request handling (runs on the connection's handler thread) -----------------------------

    def _serve(self, handler: _Handler) -> None:
        request = handler.read_request()
        request_id = self.new_request_id()
        headers = self.common_headers(request_id)
        with self._lock:
            self._requests.append(request)
            action = self._actions.popleft() if self._actions else (self._standing or Default())
        try:
            if action.validate:
                try:
                    self.validate(request, request_id)
                except Rejection as rejection:
                    with self._lock:
                        self._rejections.append((rejection.status, rejection.body))
                    handler.send(Response.json(rejection.status, rejection.body, headers, self.json_indent))
                    return
            self._perform(action, handler, request, request_id, headers)
        except Exception as error:
            # A bug in the mock itself: say so on the wire rather than dropping the connection,
            # which a test would mistake for a deliberate Reset.
            handler.send(Response(500, {"content-type": "text/plain"}, f"mock provider bug: {error!r}".encode()))
            raise

    def _perform(self, action: Action, handler: _Handler, request: RecordedRequest,
                 request_id: str | None, headers: dict[str, str]) -> None:
        if isinstance(action, Reply):
            handler.send(self._scripted_reply(action, headers))
        elif isinstance(action, StreamEvents):
            frames = [action.events] if isinstance(action.events, bytes) else [
                event if isinstance(event, bytes) else self.encode_event(event) for event in action.events]
            handler.send(Response.stream(frames, headers, action.delay, action.then_reset))
        elif isinstance(action, Hang):
            self._closing.wait(action.seconds)
            handler.close_connection = True
        elif isinstance(action, Reset):
            handler.reset()
        elif isinstance(action, ResetMidBody):
            handler.send_truncated(self.default_response(request, request_id))
        elif isinstance(action, StallAfterHeaders):
            response = self.default_response(request, request_id)
            response.first_delay = action.seconds
            handler.send(response)
        elif isinstance(action, Delay) and self._closing.wait(action.seconds):
            handler.reset()  # closed while delaying: the reply would never be read anyway
        else:  # Default, or a Delay that ran its course
            handler.send(self.default_response(request, request_id))

    def _scripted_reply(self, reply: Reply, headers: dict[str, str]) -> Response:
        if reply.json_body is not None:
            response = Response.json(reply.status, reply.json_body, headers, self.json_indent)
        else:
            response = Response(reply.status, dict(headers), reply.body or b"")
        response.headers.update(reply.headers or {})
        return response

    def _track(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)
        if self._closing.is_set():  # accepted while close() was running
            _shutdown_quietly(connection)

    def _untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)


def _shutdown_quietly(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a handler stuck in Hang must never keep the test process alive
    request_queue_size = 128  # the default backlog of 5 drops connections under concurrent tests
    mock: MockServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse-DNS lookup of the host, which can stall for
        # seconds in sandboxes; the mock only ever binds 127.0.0.1.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing its connection mid-read (a reset after it stopped reading) is
        # normal for a server, not a failure to print; anything else still is.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


_REASONS = {529: "Overloaded"}  # http.server knows no phrase for Anthropic's 529


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the gateway's connection pool expects
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle plus the peer's
    # delayed ACK stalls every reply by ~40 ms.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.mock._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.mock._untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: tests inspect ``MockServer.requests`` instead of access logs."""

    def _dispatch(self) -> None:
        self.server.mock._serve(self)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    # --- reading -------------------------------------------------------------------------------

    def read_request(self) -> RecordedRequest:
        body = self._read_body()
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        url = urlsplit(self.path)
        return RecordedRequest(self.command, url.path, parse_qs(url.query, keep_blank_values=True),
                               headers, body, _parse_json(body))

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size = int(self.rfile.readline(65537).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                break
            chunks.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF closing the chunk
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailer fields
        return b"".join(chunks)

    # --- writing -------------------------------------------------------------------------------

    def send(self, response: Response) -> None:
        try:
            if response.frames is None:
                self._start(response, len(response.body))
                if not self._stall(response.first_delay):
                    return
                if self.command != "HEAD":  # a HEAD reply announces the body without sending it
                    self.wfile.write(response.body)
            else:
                self._send_stream(response)
        except OSError:  # the client went away mid-reply; nothing left to do on this connection
            self.close_connection = True

    def _start(self, response: Response, content_length: int | None) -> None:
        self.send_response(response.status, _REASONS.get(response.status))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if content_length is None:
            self.send_header("transfer-encoding", "chunked")
        else:
            self.send_header("content-length", str(content_length))
        self.end_headers()

    def _stall(self, seconds: float) -> bool:
        """Waits ``seconds`` after the headers; False (and the connection reset) if the mock is
        closing or the peer left meanwhile."""
        if not seconds:
            return True
        self.wfile.flush()
        if self.server.mock._closing.wait(seconds):
            self.reset()
            return False
        return True

    def _send_stream(self, response: Response) -> None:
        self._start(response, None)
        if not self._stall(response.first_delay):
            return
        for index, frame in enumerate(f for f in response.frames if f):  # an empty chunk would end the body
            if index and response.delay and self.server.mock._closing.wait(response.delay):
                self.reset()
                return
            self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
        if response.then_reset:
            self.reset()
        else:
            self.wfile.write(b"0\r\n\r\n")

    def send_truncated(self, response: Response) -> None:
        body = response.body if response.frames is None else b"".join(response.frames)
        try:
            self._start(response, len(body))
            self.wfile.write(body[: len(body) // 2])
        except OSError:
            pass
        self.reset()

    def reset(self) -> None:
        """Close with SO_LINGER=0 so the peer sees an RST, not an orderly FIN."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()  # drop the makefile reference so close() releases the socket now
            self.connection.close()
        except OSError:
            pass


def _parse_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    # RecursionError: nesting deeper than Python's parser goes, which the real APIs
    # also refuse as unparsable.
    except (ValueError, RecursionError):  # ValueError includes UnicodeDecodeError
        return None
