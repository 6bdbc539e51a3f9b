"""The embedded AWS: moto's server in a process of its own (it is pure Python; sharing a GIL slows both)."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.synchronize
import signal
import socket

from pipeline.errors import ImgopsError


class MotoStartError(ImgopsError, RuntimeError):
    pass


def _serve(port: int, conn: multiprocessing.connection.Connection, stop: multiprocessing.synchronize.Event) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request on the console
    from moto.server import ThreadedMotoServer

    try:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        host, bound_port = server.get_host_and_port()
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a start failure
        conn.send(("error", str(exc)))
        return
    conn.send(("ok", f"http://{host}:{bound_port}"))
    stop.wait()
    server.stop()


class MotoProcess:
    def __init__(self, port: int = 0) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._parent_conn, child_conn = context.Pipe()
        self._process = context.Process(target=_serve, args=(port, child_conn, self._stop), name="moto", daemon=True)
        self.endpoint_url = ""
        self._port = port

    def start(self, timeout: float = 30.0) -> str:
        if self._port:
            ensure_port_free(self._port)
        self._process.start()
        if not self._parent_conn.poll(timeout):
            self.stop()
            raise MotoStartError(f"the embedded AWS (moto) did not start within {timeout:.0f} s")
        try:
            status, detail = self._parent_conn.recv()
        except EOFError:  # the child died before it could say anything
            status, detail = "error", f"its process exited with code {self._process.exitcode}"
        if status != "ok":
            self.stop()
            raise MotoStartError(f"the embedded AWS (moto) could not start: {detail}")
        self.endpoint_url = str(detail)
        return self.endpoint_url

    def stop(self) -> None:
        self._stop.set()
        self._process.join(5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(2)


def ensure_port_free(port: int) -> None:
    """moto's server hangs rather than failing when its port is taken; check first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise MotoStartError(f"port {port} on 127.0.0.1 is already in use; pick another with --port") from None
