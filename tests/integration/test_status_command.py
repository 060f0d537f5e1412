"""``misbridge status`` against a real HTTP server standing in for misbridge's door.

The server is ``http.server`` in a thread (over TCP, and over a Unix socket as the door serves
``api.http_socket``); the command runs as a real process for the verdicts and in-process for the
odd answers (a refusal, text, silence, fields of the wrong type), both through real httpx.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from misbridge.app.cli import main
from misbridge.app.status import HealthAnswer, HealthTarget, describe
from misbridge.config.settings import ApiSettings
from misbridge.errors import ConfigError
from misbridge.telemetry.logs import configure_logging
from tests.integration.conftest import Bench

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tok-status-1234"

READY: dict[str, Any] = {
    "status": "ready", "reasons": [], "accepting": True, "recovering": False,
    "pad": {"connected": True, "model": "MISBRIDGE-SIM", "firmware": "1.0.0", "serialNo": "SIM0001",
            "master_key_kcv": "ABC123", "working_key_kcv": "D1E2F3", "key_ok": True},
    "backend": {"signed_in": True, "signed_in_at": "2026-12-05T03:00:02+08:00", "working_key_kcv": "D1E2F3",
                "last_ok_s": 12.3, "reachable": True},
    "inFlight": 0, "reversals": {"pending": 0, "needsManual": 0}, "alerts": [],
}  # fmt: skip
NOT_READY: dict[str, Any] = {
    "status": "not ready", "reasons": ["the PIN pad is not connected", "not signed in yet"],
    "accepting": True, "recovering": False,
    "pad": {"connected": False, "model": None, "firmware": None, "serialNo": None,
            "master_key_kcv": None, "working_key_kcv": None, "key_ok": False},
    "backend": {"signed_in": False, "signed_in_at": None, "working_key_kcv": None, "last_ok_s": None,
                "reachable": False},
    "inFlight": 0, "reversals": {"pending": 2, "needsManual": 1}, "alerts": ["1 reversal(s) need manual resolution"],
}  # fmt: skip
READY_LINES = [
    "PIN pad      connected  MISBRIDGE-SIM 1.0.0 (serial SIM0001)",
    "master key   KCV ABC123",
    "working key  KCV D1E2F3 (the backend's: D1E2F3) ok",
    "signed in    yes, at 2026-12-05 03:00:02",
    "backend      reachable, last answered 12 s ago",
    "in flight    0 transactions",
    "reversals    0 pending, 0 need a person",
]
NOT_READY_LINES = [
    "why:",
    "  - the PIN pad is not connected",
    "  - not signed in yet",
    "PIN pad      NOT connected",
    "master key   unknown",
    "working key  unknown (the backend's: none yet) NOT OK",
    "signed in    NO",
    "backend      NOT reachable, no answer since misbridge started",
    "in flight    0 transactions",
    "reversals    2 pending, 1 needs a person",
    "alerts:",
    "  - 1 reversal(s) need manual resolution",
]


@dataclass
class Door:
    """What the stand-in door answers, and the Authorization headers it was sent."""

    status: int = 200
    body: bytes = json.dumps(READY).encode()
    content_type: str = "application/json"
    authorizations: list[str | None] = field(default_factory=list)

    def answer(self, status: int, body: dict[str, Any] | bytes, content_type: str = "application/json") -> None:
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.content_type = content_type


def _handler(door: Door) -> type[BaseHTTPRequestHandler]:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            door.authorizations.append(self.headers.get("Authorization"))
            status, body = (door.status, door.body) if self.path == "/health" else (404, b"{}")
            self.send_response(status)
            self.send_header("Content-Type", door.content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # a Unix-socket peer has no address to log, and the test output stays clean

    return Health


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _serve(server: socketserver.BaseServer) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def tcp_door() -> Iterator[tuple[Door, int]]:
    door = Door()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(door))
    server.daemon_threads = True
    for _ in _serve(server):
        yield door, server.server_address[1]


@pytest.fixture
def unix_door(tmp_path: Path) -> Iterator[tuple[Door, Path]]:
    door = Door()
    path = tmp_path / "api.sock"
    server = _UnixHTTPServer(str(path), _handler(door))
    for _ in _serve(server):
        yield door, path


@pytest.fixture(autouse=True)
def _no_site_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("MISBRIDGE_CONFIG", raising=False)
    monkeypatch.setattr("misbridge.app.cli.DEFAULT_CONFIG_PATH", Path("/nonexistent/misbridge.toml"))
    yield
    configure_logging("WARNING")


def _config(tmp_path: Path, api: str, *, token: bytes | None = TOKEN.encode()) -> Path:
    """A misbridge.toml with this ``[api]`` table, and the token file it names."""
    lines = ["[api]", api]
    if token is not None:
        token_file = tmp_path / "api-token"
        token_file.write_bytes(token + b"\n")
        token_file.chmod(0o600)
        lines.append(f'token_file = "{token_file}"')
    config = tmp_path / "misbridge.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_status(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    base.pop("MISBRIDGE_CONFIG", None)
    return subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "misbridge", "status", *args],
        env={**base, **(env or {})}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


# -- as a process -------------------------------------------------------------------------------------


def test_ready_over_tcp_with_the_token_and_past_a_proxy(tcp_door: tuple[Door, int], tmp_path: Path) -> None:
    door, port = tcp_door
    config = _config(tmp_path, f"http_port = {port}")
    # A proxy in the technician's shell must not carry the loopback request away (it would fail here).
    proxy = {"http_proxy": "http://127.0.0.1:1", "HTTP_PROXY": "http://127.0.0.1:1", "ALL_PROXY": "", "NO_PROXY": ""}
    done = run_status("--config", str(config), env=proxy)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"misbridge at http://127.0.0.1:{port}: READY", *READY_LINES]
    assert door.authorizations == [f"Bearer {TOKEN}"]
    assert TOKEN not in done.stdout + done.stderr


def test_not_ready_says_why_and_exits_1(tcp_door: tuple[Door, int], tmp_path: Path) -> None:
    door, port = tcp_door
    door.answer(503, NOT_READY)
    done = run_status("--config", str(_config(tmp_path, f"http_port = {port}")))
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [f"misbridge at http://127.0.0.1:{port}: NOT READY", *NOT_READY_LINES]


def test_nobody_listening_is_one_line_and_exit_2(tmp_path: Path) -> None:
    port = _closed_port()
    done = run_status("--config", str(_config(tmp_path, f"http_port = {port}")))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"http://127.0.0.1:{port}" in done.stderr
    assert "systemctl status misbridge" in done.stderr
    assert "Traceback" not in done.stderr


def test_ready_over_the_unix_socket_from_misbridge_config(unix_door: tuple[Door, Path], tmp_path: Path) -> None:
    door, path = unix_door
    config = _config(tmp_path, f'http_socket = "{path}"')
    done = run_status(env={"MISBRIDGE_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"misbridge at unix:{path}: READY", *READY_LINES]
    assert door.authorizations == [f"Bearer {TOKEN}"]


@pytest.mark.asyncio(loop_scope="module")
async def test_a_real_daemon_on_the_bench_is_ready(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://{bench.host}:{bench.daemon.http_port}"
    # In a thread: the command blocks on its answer, which the daemon serves from this loop.
    code = await asyncio.to_thread(main, ["status", "--url", url])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0, lines
    assert lines[0] == f"misbridge at {url}: READY"
    assert lines[1].startswith("PIN pad      connected  MISBRIDGE-SIM "), lines


# -- in-process, through real httpx --------------------------------------------------------------------


def test_json_prints_the_answer_as_sent_with_the_same_exit_status(
    tcp_door: tuple[Door, int], capsys: pytest.CaptureFixture[str]
) -> None:
    door, port = tcp_door
    sent = b'{"status": "not ready",  "reasons": ["not signed in yet"], "extra": 1}'
    door.answer(503, sent)
    assert main(["status", "--url", f"http://127.0.0.1:{port}/health", "--json"]) == 1
    assert capsys.readouterr().out == sent.decode() + "\n"


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        (200, b"<html>welcome</html>", "text/html", "answered /health with HTTP 200, not misbridge's JSON"),
        (200, b"[1, 2]", "application/json", "answered /health with HTTP 200, not misbridge's JSON"),
        (200, b"[" * 100_000, "application/json", "answered /health with HTTP 200, not misbridge's JSON"),
        (403, b'{"returnCode": "MB75", "returnDesc": "local user 1000 is not allowed"}', "application/json",
         "refused /health: HTTP 403 MB75 local user 1000 is not allowed"),
    ],
)  # fmt: skip
def test_an_answer_that_is_not_health_is_one_line_and_exit_2(
    tcp_door: tuple[Door, int], capsys: pytest.CaptureFixture[str],
    status: int, body: bytes, content_type: str, expected: str,
) -> None:  # fmt: skip
    door, port = tcp_door
    door.answer(status, body, content_type)
    assert main(["status", "--url", f"http://127.0.0.1:{port}"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.count("\n") == 1
    assert expected in out.err
    assert "systemctl status misbridge" in out.err or status == 403


def test_a_door_that_never_answers_times_out_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel completes the connection; nobody ever reads the request
        port = silent.getsockname()[1]
        assert main(["status", "--url", f"http://127.0.0.1:{port}", "--timeout", "0.3"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"misbridge: misbridge at http://127.0.0.1:{port} did not answer within 0.3 s; see systemctl status misbridge\n"
    )


def test_an_older_misbridge_without_keys_or_backend_is_shown_as_far_as_it_goes(
    tcp_door: tuple[Door, int], capsys: pytest.CaptureFixture[str]
) -> None:
    door, port = tcp_door
    door.answer(200, {"status": "ready", "accepting": True, "recovering": False,
                      "device": {"connected": True, "model": "MISBRIDGE-SIM", "firmware": "1.0.0", "serialNo": "S1"},
                      "inFlight": 1, "reversals": {"pending": 0, "needsManual": 0}, "alerts": []})  # fmt: skip
    assert main(["status", "--url", f"http://127.0.0.1:{port}"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"misbridge at http://127.0.0.1:{port}: READY",
        "PIN pad      connected  MISBRIDGE-SIM 1.0.0 (serial S1)",
        "in flight    1 transaction",
        "reversals    0 pending, 0 need a person",
    ]


def test_a_missing_backend_and_odd_fields_never_break_the_report(
    tcp_door: tuple[Door, int], capsys: pytest.CaptureFixture[str]
) -> None:
    door, port = tcp_door
    body = {
        **NOT_READY,
        "reasons": ["pad \x1b[2Jgone", 7],
        "pad": {"connected": True, "master_key_kcv": None, "working_key_kcv": "D1E2F3", "key_ok": "yes"},
        "inFlight": "many",
        "reversals": [],
        "alerts": "x",
    }
    del body["backend"]  # fmt: skip
    door.answer(503, body)
    assert main(["status", "--url", f"http://127.0.0.1:{port}"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"misbridge at http://127.0.0.1:{port}: NOT READY",
        "why:",
        "  - pad ?[2Jgone",  # no escape sequence reaches the terminal
        "  - 7",
        "PIN pad      connected",
        "master key   none",
        "working key  KCV D1E2F3",
    ]


def test_the_latest_end_of_day_run_is_a_line_and_its_mismatches_an_alert_while_ready(
    tcp_door: tuple[Door, int], capsys: pytest.CaptureFixture[str]
) -> None:
    door, port = tcp_door
    report = "/var/lib/misbridge/reports/2026-05-01/reconcile-20260502T043500000000Z.json"
    alert = f"2 end-of-day mismatch(es) for 2026-05-01: see {report}"
    door.answer(
        200, {**READY, "alerts": [alert], "reconcile": {"date": "2026-05-01", "mismatches": 2, "report": report}}
    )
    assert main(["status", "--url", f"http://127.0.0.1:{port}"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"misbridge at http://127.0.0.1:{port}: READY",
        *READY_LINES,
        f"reconcile    2026-05-01: 2 MISMATCH(ES), see {report}",
        "alerts:",
        f"  - {alert}",
    ]
    door.answer(200, {**READY, "reconcile": {"date": "2026-05-01", "mismatches": 0, "report": report}})
    assert main(["status", "--url", f"http://127.0.0.1:{port}"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "reconcile    2026-05-01: all matched"


def test_a_200_that_says_not_ready_is_not_ready(tcp_door: tuple[Door, int], capsys: pytest.CaptureFixture[str]) -> None:
    door, port = tcp_door
    door.answer(200, {**READY, "status": "not ready", "reasons": [], "recovering": True})
    assert main(["status", "--url", f"http://127.0.0.1:{port}"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [
        f"misbridge at http://127.0.0.1:{port}: NOT READY",
        "why:",
        "  - misbridge is finishing interrupted transactions",
    ]


def test_a_token_it_cannot_read_is_not_sent_and_not_an_error(
    tcp_door: tuple[Door, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    door, port = tcp_door
    for token in (b"\xff\xfe not text", "tök".encode()):  # not UTF-8; not fit for a header
        config = _config(tmp_path, f"http_port = {port}", token=token)
        assert main(["status", "--config", str(config)]) == 0
    assert door.authorizations == [None, None]
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-0000 file")
def test_a_root_only_token_is_not_sent_and_not_an_error(
    tcp_door: tuple[Door, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    door, port = tcp_door
    config = _config(tmp_path, f"http_port = {port}")
    (tmp_path / "api-token").chmod(0)
    assert main(["status", "--config", str(config)]) == 0
    assert door.authorizations == [None]


def test_url_beats_the_configured_door(tcp_door: tuple[Door, int], tmp_path: Path) -> None:
    door, port = tcp_door
    config = _config(tmp_path, f"http_port = {_closed_port()}", token=None)
    assert main(["status", "--config", str(config), "--url", f"http://127.0.0.1:{port}"]) == 0
    assert door.authorizations == [None]


def test_a_missing_socket_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gone.sock"
    assert main(["status", "--url", f"unix:{path}"]) == 2
    err = capsys.readouterr().err
    assert f"unix:{path}" in err
    assert "No such file or directory" in err
    assert "systemctl status misbridge" in err


# -- where the door is --------------------------------------------------------------------------------


def test_the_configured_door() -> None:
    assert HealthTarget.from_settings(ApiSettings()).name == "http://127.0.0.1:9101"
    assert HealthTarget.from_settings(ApiSettings(host="::1", http_port=9200)).name == "http://[::1]:9200"
    assert HealthTarget.from_settings(ApiSettings(host="0.0.0.0")).name == "http://127.0.0.1:9101"
    door = HealthTarget.from_settings(ApiSettings(http_socket=Path("/run/misbridge/api.sock")))
    assert (door.name, door.base_url) == ("unix:/run/misbridge/api.sock", "http://localhost")


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("http://127.0.0.1:9101", "http://127.0.0.1:9101"),
        ("http://127.0.0.1:9101/", "http://127.0.0.1:9101"),
        ("http://127.0.0.1:9101/health", "http://127.0.0.1:9101"),
        ("unix:/run/misbridge/api.sock", "unix:/run/misbridge/api.sock"),
    ],
)
def test_url_forms(url: str, name: str) -> None:
    assert HealthTarget.parse(url).name == name


@pytest.mark.parametrize("url", ["127.0.0.1:9101", "ftp://x", "http://", "unix:relative.sock"])
def test_url_forms_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="--url"):
        HealthTarget.parse(url)


def test_a_bad_url_or_timeout_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--url", "ftp://x"]) == 2
    assert "give http://HOST:PORT or unix:/PATH" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["status", "--timeout", "0"])
    assert usage.value.code == 2
    assert "not a number of seconds above 0" in capsys.readouterr().err


def test_the_sample_in_operations_md_is_what_it_prints() -> None:
    text = (REPO_ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    sample = text.split("sudo misbridge status\n```\n```\n", 1)[1].split("```", 1)[0]
    answer = HealthAnswer(200, json.dumps(READY), READY)
    assert describe(HealthTarget.from_settings(ApiSettings()), answer) + "\n" == sample
