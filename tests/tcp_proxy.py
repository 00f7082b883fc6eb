"""A TCP proxy on 127.0.0.1 for outage tests: forwards to a target until told to fail.

``cut()`` makes the target unreachable the way a network or server outage does: open connections are
reset (SO_LINGER 0, so the peer sees ECONNRESET rather than a clean end), and new ones are either
reset as soon as they are accepted (``mode="reset"``) or refused outright because nothing listens
(``mode="refuse"``: the listening socket is closed, and bound again on the same port by ``restore``).
"""

from __future__ import annotations

import socket
import struct
import threading


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``; ``cut()`` and ``restore()`` switch it off and on."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.cut_mode = ""  # '' while forwarding
        self.connections = 0  # accepted while forwarding
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        self._listen()
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()
        return self

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            listener = self._listener
            if listener is None:
                self._stopped.wait(0.05)
                continue
            try:
                # A timeout on the listener, not select(): late in a long test session descriptors
                # pass FD_SETSIZE (1024), and select() then fails on every call, so nothing was ever
                # accepted again (two outage tests hung for 300 s in full runs).
                client, _ = listener.accept()
            except OSError:  # the timeout, or closed by cut(mode="refuse") meanwhile
                continue
            if self.cut_mode:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(1 << 16):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            with self._lock:
                for s in (src, dst):
                    if s in self._open:
                        self._open.discard(s)
                        _reset(s)

    def cut(self, mode: str = "reset") -> None:
        """Make the target unreachable: reset open connections, and reset or refuse new ones."""
        assert mode in ("reset", "refuse")
        self.cut_mode = mode
        if mode == "refuse" and self._listener is not None:
            listener, self._listener = self._listener, None
            # Linux: shutdown stops listening at once and resets the connections queued for accept;
            # a bare close could leave the socket alive while another thread is inside accept().
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            doomed, self._open = list(self._open), set()
        for s in doomed:
            _reset(s)

    def restore(self) -> None:
        """Forward again (on the same port)."""
        if self._listener is None:
            self._listen()
        self.cut_mode = ""

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.cut()
