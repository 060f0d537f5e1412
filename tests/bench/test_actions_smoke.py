"""``python -m bench.actions --quick`` runs end to end and prints rows that parse (timings are not judged).

The bench runs as a process of its own, as ``make bench`` runs it: real simulators, a real
``misbridge serve`` subprocess, voids, refunds and QR sales through the socket door, fresh starts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from bench.actions import LINES, Measured, Starts, Timed, rows
from bench.common import load_rows
from bench.wire import wire_seconds

REPO = Path(__file__).resolve().parents[2]
NUMBER = r"[\d.]+ (?:ms|us)"
VERSUS = rf"p50 {NUMBER} vs {NUMBER}, p99 {NUMBER} vs {NUMBER}"
RATIOS = re.compile(r"^p50 [\d.]+x, p99 [\d.]+x info$")


def run_quick(json_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "bench.actions", "--quick", "--json", str(json_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


def test_quick_run_prints_every_line_and_writes_them_as_json(tmp_path: Path) -> None:
    json_path = tmp_path / "actions.json"
    done = run_quick(json_path)
    assert done.returncode == 0, done.stderr[-2000:]
    by_name = {row.name: row for row in load_rows(json_path)}
    for name, word in LINES.values():
        assert re.fullmatch(rf"{VERSUS}; CPU [\d.]+ ms/{word}", by_name[name].measured), by_name[name]
        assert RATIOS.match(by_name[name].verdict), by_name[name]
        assert name in done.stdout
    # A void and a refund go through the pad (their wire time is in the floor); a QR sale does not.
    assert re.search(r"link wire [\d.]+ ms \(\d{3} B", by_name[LINES["voidCardSale"][0]].note)
    assert "no pad" in by_name[LINES["qrcodeSale"][0]].note
    start = by_name["9d. spawn to signed in, key in the pad"]
    assert re.fullmatch(rf"p50 {NUMBER}, p99 {NUMBER}; CPU \d+ ms/start", start.measured)
    sign_in = by_name["9e. the start-up sign-in call vs floor"]
    assert re.fullmatch(VERSUS, sign_in.measured)
    assert RATIOS.match(sign_in.verdict)


def test_the_floor_is_the_direct_rtt_plus_the_wire_plus_the_commits_and_the_bridge_pays_the_wire_too() -> None:
    wire_bytes, fsync = 576, 0.001
    wire = wire_seconds(wire_bytes)
    void = Timed(bridge_s=[0.020] * 10, direct_s=[0.005] * 10, cpu_s=0.1, commits=6, link_bytes=wire_bytes)
    qr = Timed(bridge_s=[0.008] * 10, direct_s=[0.002] * 10, cpu_s=0.05, commits=4)
    measured = Measured(
        10,
        fsync_s=[fsync] * 10,
        actions={"voidCardSale": void, "refundCardSale": void, "qrcodeSale": qr},
        starts=Starts(ready_s=[0.6], cpu_s=[0.5], sign_in_s=[0.006], direct_s=[0.004]),
    )
    by_name = {row.name: row for row in rows(measured)}
    void_ratio = (0.020 + wire) / (0.005 + wire + 6 * fsync)
    assert by_name[LINES["voidCardSale"][0]].verdict == f"p50 {void_ratio:.2f}x, p99 {void_ratio:.2f}x info"
    assert by_name[LINES["voidCardSale"][0]].measured.endswith("CPU 10.00 ms/void")
    qr_ratio = 0.008 / (0.002 + 4 * fsync)
    assert by_name[LINES["qrcodeSale"][0]].verdict == f"p50 {qr_ratio:.2f}x, p99 {qr_ratio:.2f}x info"
    assert by_name["9e. the start-up sign-in call vs floor"].verdict == "p50 1.20x, p99 1.20x info"
    assert by_name["9d. spawn to signed in, key in the pad"].measured.endswith("CPU 500 ms/start")
