"""Hostile peers for the abuse suite: a raw HTTP server that answers however a test scripts it (drips,
amplifying bodies, another node's Summary), and raw clients (idle sockets, huge headers, resets).

Everything listens and connects on loopback only, and every loop is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

Responder = Callable[[socket.socket], None]


class EvilServer:
    """Accepts connections on ``host``; each reads the request headers then runs ``respond(sock)``."""

    def __init__(self, respond: Responder, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.respond = respond
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.tls = tls
        self.host = f"[{host}]" if ":" in host else host
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, scheme: str = "http", path: str = "") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            self.respond(conn)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def send_all(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


def answer(body: bytes | Iterator[bytes], content_type: str = "application/json", status: str = "200 OK",
           chunked: bool = False, close: bool = False) -> Responder:
    """A responder sending ``body`` (bytes, or chunks from an iterator) with Content-Length, chunked
    framing, or ``Connection: close`` framing."""

    def respond(sock: socket.socket) -> None:
        head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        if chunked:
            send_all(sock, (head + "Transfer-Encoding: chunked\r\n\r\n").encode())
            for part in ([body] if isinstance(body, bytes) else body):
                send_all(sock, b"%x\r\n%s\r\n" % (len(part), part))
            send_all(sock, b"0\r\n\r\n")
        elif close:
            send_all(sock, (head + "Connection: close\r\n\r\n").encode())
            for part in ([body] if isinstance(body, bytes) else body):
                send_all(sock, part)
        else:
            assert isinstance(body, bytes)
            send_all(sock, (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body)

    return respond


def drip(data: bytes, every: float, limit: float = 20.0) -> Iterator[bytes]:
    """``data`` one byte at a time, ``every`` seconds apart, for at most ``limit`` seconds."""
    end = time.monotonic() + limit
    for i in range(len(data)):
        if time.monotonic() > end:
            return
        yield data[i:i + 1]
        time.sleep(every)


def dripping(prefix: bytes, every: float, limit: float = 20.0) -> Responder:
    """Send ``prefix`` one byte per ``every`` seconds (a status line and headers that never finish)."""

    def respond(sock: socket.socket) -> None:
        for byte in drip(prefix, every, limit):
            send_all(sock, byte)

    return respond


def reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN (SO_LINGER 0)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def connect(host: str, port: int, timeout: float = 5.0) -> socket.socket:
    host = host.strip("[]")
    return socket.create_connection((host, port), timeout=timeout)


def write_token(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
