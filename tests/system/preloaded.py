"""``misbridge`` and ``misbridge-sim`` imported once and forked per command, for tests that run many.

Starting either command spends about 0.6 s of CPU importing before it does anything; a test
that runs the forty-odd commands of docs/operations.md would spend most of its time there. So
the test puts two launchers named ``misbridge`` and ``misbridge-sim`` on ``PATH``: each is a
``/bin/sh`` script that starts a bare interpreter (``-I -S``: no site, no imports beyond the
standard library) running :data:`CLIENT`, which hands the command's argv, environment, working
directory and standard input, output and error (the file descriptors themselves) to a server
that has imported both programs. The server forks; the child takes over those descriptors and
runs the program's ``main(argv)``, as the installed launcher does, and the client exits with its
exit status. When the client goes (its caller killed it, or its timeout did), the child gets
SIGTERM, as a command in a shell would from its terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

#: The launcher's half: connect, send the request and the three descriptors, exit with the status.
CLIENT = """
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
request = {"program": sys.argv[2], "argv": sys.argv[3:], "cwd": os.getcwd(), "env": dict(os.environ)}
socket.send_fds(s, [json.dumps(request).encode()], [0, 1, 2])
sys.exit(int(s.recv(16) or b"1"))
"""
#: Longest a command may run before its child kills itself (a leaked one must not outlive the test).
COMMAND_LIMIT_S = 120


def _programs() -> dict[str, Callable[[list[str]], int | None]]:
    from misbridge.app.cli import main as misbridge
    from simulators.cli import main as simulators

    return {"misbridge": misbridge, "misbridge-sim": simulators}


def serve(path: str) -> None:
    """Listen at ``path`` and run each request in a forked child (the server's ``__main__``)."""
    programs = _programs()
    # fork() copies only the calling thread: the imports must not have started any.
    assert threading.active_count() == 1, threading.enumerate()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the children reap themselves
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as server:
        server.bind(path)
        server.listen(64)
        sys.stdout.write("ready\n")  # the test waits for this line
        sys.stdout.flush()
        while True:
            connection, _ = server.accept()
            if os.fork() == 0:
                server.close()
                _child(connection, programs)
            connection.close()


def _child(connection: socket.socket, programs: dict[str, Callable[[list[str]], int | None]]) -> None:
    message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
    request = json.loads(message)
    for fd, target in zip(fds, (0, 1, 2), strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the command waits for its own children (a demo's simulators)
    signal.alarm(COMMAND_LIMIT_S)
    threading.Thread(target=_end_with_client, args=(connection,), daemon=True).start()
    status = 1
    try:
        status = _exit_status(programs[request["program"]], request["argv"])
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        with contextlib.suppress(OSError):
            connection.sendall(str(status).encode())
        os._exit(status)


def _exit_status(main: Callable[[list[str]], int | None], argv: list[str]) -> int:
    try:
        result = main(argv)
    except SystemExit as exit_:  # argparse: --help, --version, usage errors
        result = exit_.code if isinstance(exit_.code, int) or exit_.code is None else 1
    return 0 if result is None else result


def _end_with_client(connection: socket.socket) -> None:
    # The client sends nothing more: recv returns only when it is gone.
    with contextlib.suppress(OSError):
        connection.recv(1)
    os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def launchers(folder: Path, repo: Path) -> Iterator[Path]:
    """A server and its two launchers in ``folder/bin`` (put it first on PATH); yields the bin folder."""
    socket_path = folder / "preloaded.sock"
    log = folder / "preloaded.log"
    with log.open("w", encoding="utf-8") as output:
        # A fixed argv: this module, run by the test's own interpreter.
        server = subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", f"from tests.system.preloaded import serve; serve({str(socket_path)!r})"],
            cwd=repo, env=os.environ | {"PYTHONPATH": str(repo)}, stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "ready" not in log.read_text(encoding="utf-8"):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the preloaded server did not start: {log.read_text(encoding='utf-8')}")
            time.sleep(0.02)
        bin_dir = folder / "bin"
        bin_dir.mkdir()
        for program in ("misbridge", "misbridge-sim"):
            launcher = bin_dir / program
            launcher.write_text(
                f'#!/bin/sh\nexec "{sys.executable}" -I -S -c \'{CLIENT}\' "{socket_path}" {program} "$@"\n',
                encoding="utf-8",
            )
            launcher.chmod(0o755)
        yield bin_dir
    finally:
        server.terminate()
        server.wait(timeout=10)
