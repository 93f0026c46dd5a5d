"""Serving one WSGI app from several processes on one listening socket (pre-fork).

A Python API process is bound by its interpreter lock: the verifier's token issuance saturates
one core per process (docs/benchmarks.md, Tokens). ``serve_processes`` binds the socket once,
then forks ``processes`` children; each builds its own app (its own database engine, Redis
connections and writer threads: nothing is shared across the fork) and serves the inherited
socket with waitress, and the kernel hands each new connection to one of them.

Children start one after another, each once the one before has built its app: a child that
fails while building (bad settings, database unreachable) stops the start, and its exit status
is the command's. A child that dies later is replaced after a second. SIGTERM or SIGINT to the
parent stops every child (SIGTERM) and returns 0 once they have exited.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import waitress

__all__ = ["listen", "serve_processes"]

log = logging.getLogger(__name__)

RESPAWN_DELAY_SECONDS = 1.0
BACKLOG = 1024

WsgiApp = Callable[..., Any]
Serve = Callable[[Any, socket.socket], None]  # serves what ``make_app`` made on the socket


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 when ``host`` has a colon); raises the
    ``OSError`` of a port in use."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=BACKLOG)


def serve_processes(
    make_app: Callable[[], Any],
    sock: socket.socket,
    *,
    processes: int,
    threads: int,
    ident: str,
    exit_status: Callable[[BaseException], int],
    on_exit: Callable[[int], None] = lambda _pid: None,
    serve: Serve | None = None,
) -> int:
    """Serve ``make_app()`` from ``processes`` children on ``sock`` until signalled (module
    docstring). Returns 0 after a signal, or the exit status of a child that failed to start.
    ``exit_status`` maps what a child raised to its exit status; ``on_exit`` is told each
    child's pid when it has exited. ``serve`` runs in each child on what ``make_app`` made
    (default: waitress with ``threads``, a WSGI app)."""
    serve = serve or _waitress(threads, ident)
    children: dict[int, int] = {}  # pid -> slot
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            _signal(pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for slot in range(processes):
            pid, started = _spawn(make_app, sock, serve, exit_status)
            if not started:
                status = _status(os.waitpid(pid, 0)[1])
                on_exit(pid)
                stop(signal.SIGTERM, None)
                _reap(children, on_exit)
                return status or 1
            children[pid] = slot
            if stopping:
                _signal(pid, signal.SIGTERM)
        log.info("serving from %d processes", processes)
        while children:
            pid, raw = os.wait()
            slot_of = children.pop(pid, None)
            on_exit(pid)
            if slot_of is None or stopping:
                continue
            log.warning("API process %d exited (status %d); starting another", pid, _status(raw))
            time.sleep(RESPAWN_DELAY_SECONDS)
            if stopping:
                continue
            new, _ = _spawn(make_app, sock, serve, exit_status)
            children[new] = slot_of
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _waitress(threads: int, ident: str) -> Serve:
    def serve(app: WsgiApp, sock: socket.socket) -> None:
        waitress.serve(app, sockets=[sock], threads=threads, ident=ident)

    return serve


def _spawn(
    make_app: Callable[[], Any],
    sock: socket.socket,
    serve: Serve,
    exit_status: Callable[[BaseException], int],
) -> tuple[int, bool]:
    """Fork one child; returns its pid and whether it built its app (it said so on a pipe)."""
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(ready_read)
        _child(make_app, sock, serve, exit_status, ready_write)
    os.close(ready_write)
    with os.fdopen(ready_read, "rb") as ready:
        started = ready.read(1) == b"1"
    return pid, started


def _child(
    make_app: Callable[[], Any],
    sock: socket.socket,
    serve: Serve,
    exit_status: Callable[[BaseException], int],
    ready_fd: int,
) -> None:
    status = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C: the parent stops us
        app = make_app()
        os.write(ready_fd, b"1")
        os.close(ready_fd)
        serve(app, sock)
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    except BaseException as e:  # the outermost boundary of the child: reported, then its status
        try:
            status = exit_status(e)
        except BaseException:  # never run the parent's code in a child
            status = 5
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(status)


def _reap(children: dict[int, int], on_exit: Callable[[int], None]) -> None:
    while children:
        pid, _ = os.wait()
        children.pop(pid, None)
        on_exit(pid)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # exited meanwhile: the wait loop reaps it
        os.kill(pid, signum)


def _status(raw: int) -> int:
    return os.waitstatus_to_exitcode(raw) if os.WIFEXITED(raw) else 128 + os.WTERMSIG(raw)
