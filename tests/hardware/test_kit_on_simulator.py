"""The conformance kit (``misbridge conformance``, ``make test-hardware``) run on the pty simulator.

A real subprocess, exactly as a vendor runs it, with the simulator's control socket as the person
at the pad and the simulator's test keys opted in (a test pad: the test master key, and in slot 1
the kit's test working key, loaded first as a technician prepares one): every check must pass,
both reports be written and the pad keep the keys it had. Then against a simulator that breaks
rules on purpose (``--no-session-start --legacy``), the matching checks must fail and say why.
Without ``--test-keys`` the key checks are skipped and no key goes to the pad (a pad misbridge
signed in: ``--keys signed-in``); on a pad whose keys the kit cannot all put back, the report says
what to do.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from misbridge.app.simulated import launched_simulators
from misbridge.config.settings import DeviceSettings
from misbridge.device.mispos import MisPosV1Driver
from misbridge.tools.conformance.kit import run_kit
from misbridge.tools.conformance.people import SimulatorScript
from misbridge.tools.conformance.vectors import TEST_WORKING_KEY
from simulators.crypto import TEST_MASTER_KEY_HEX, key_check_value
from tests.keys import issued_day_key

#: The KCV of the simulator's master key (every ``--keys`` but unprovisioned), from its clear key.
MASTER_KCV = key_check_value(bytes.fromhex(TEST_MASTER_KEY_HEX))
#: The checks that load keys (or judge one the kit loaded): they need --test-keys.
KEY_LOADS = [
    "load-key-right-kcv",
    "load-key-wrong-kcv",
    "load-key-kept",
    "load-key-wrong-size",
    "load-key-slot1-wrong-kcv",
    "load-key-slot1-right-kcv",
    "load-master-key-wrong-kcv",
    "load-master-key-wrong-size",
    "load-master-key-right-kcv",
]


async def _kit(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "misbridge", "conformance", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


async def _pad_kcvs(device: Path, *, load_test_working_key: bool = False) -> tuple[str, str]:
    """The master and slot-1 KCVs the pad reports, read by misbridge's own driver (not the kit).

    With ``load_test_working_key``, first LOAD_WORKING_KEY of the kit's test working key into slot 1
    (under the test master key): the pad becomes a test pad whose keys the kit knows.
    """
    pad = MisPosV1Driver(DeviceSettings(url=str(device)), keepalive_s=None)
    await pad.start()
    try:
        assert await pad.wait_connected(10)
        if load_test_working_key:
            await pad.load_working_key(1, TEST_WORKING_KEY.enc_hex, TEST_WORKING_KEY.kcv)
        info = await pad.device_info()
    finally:
        await pad.stop()
    return info.master_key_kcv, info.working_key_kcv


async def test_every_check_passes_on_the_simulator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # In this process (run_kit, what `misbridge conformance` runs), so that the kit's own code is
    # measured; the rule-breaking run below goes through the command line as a vendor runs it.
    report, text = tmp_path / "report.json", tmp_path / "report.txt"
    async with launched_simulators(tmp_path) as sims:
        keys_before = await _pad_kcvs(sims.device_path, load_test_working_key=True)
        person = SimulatorScript(str(sims.control_path))
        result = await run_kit(str(sims.device_path), person=person, test_keys=True)
        keys_after = await _pad_kcvs(sims.device_path)
    out = result.text()
    result.write_json(report)
    text.write_text(out + "\n", encoding="utf-8")
    with capsys.disabled():  # make test shows the kit's report, as a vendor sees it
        sys.stdout.write("\n" + out + "\n")
    assert not result.failed, out
    assert "CONFORMANT: every check passed." in out, out
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["conformant"] is True
    assert data["summary"]["failed"] == 0
    assert data["summary"]["passed"] == len(data["checks"]) >= 47
    assert all(c["section"] and c["status"] == "passed" for c in data["checks"])
    assert {"key-kcvs", *KEY_LOADS} <= {c["id"] for c in data["checks"]}
    # The kit changed the master key and slot 1, and put back what it found.
    assert data["after_run"] == []
    assert keys_before == keys_after == (MASTER_KCV, TEST_WORKING_KEY.kcv)
    assert data["pad"]["model"] == "MISBRIDGE-SIM"
    assert "§3.1" in text.read_text(encoding="utf-8")


async def test_a_pad_breaking_rules_fails_the_matching_checks(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    checks = [
        "driver-connect", "session-start", "session-invalid-ignored", "read-code", "device-info",
        "load-master-key-wrong-size", "load-master-key-right-kcv",
    ]  # fmt: skip
    async with launched_simulators(tmp_path, pinpad_args=("--no-session-start", "--legacy")) as sims:
        code, out = await _kit(
            "--device-url", str(sims.device_path), "--sim-control", str(sims.control_path), "--test-keys",
            "--report", str(report), *(a for c in checks for a in ("--only", c)),
        )  # fmt: skip
    assert code == 1, out
    results = {c["id"]: c for c in json.loads(report.read_text(encoding="utf-8"))["checks"]}
    assert set(results) == set(checks)
    start = results["session-start"]
    assert start["status"] == "failed"
    assert start["section"] == "3.1"
    assert "LINK_RESET_REPLY" in start["expected"], start
    assert "NAK" in start["got"], start
    assert results["read-code"]["status"] == "failed"
    assert "07" in results["read-code"]["got"]
    assert results["device-info"]["status"] == "passed"
    # A pad from before LOAD_MASTER_KEY answers it 07, a malformed key included.
    master = results["load-master-key-right-kcv"]
    assert (master["status"], master["section"]) == ("failed", "11")
    assert master["expected"].startswith("RESULT 00"), master
    assert master["got"].startswith("RESULT 07"), master
    assert "before LOAD_MASTER_KEY" in master["detail"], master
    assert results["load-master-key-wrong-size"]["status"] == "passed"
    assert "NOT CONFORMANT" in out


async def test_without_anyone_at_the_pad_the_person_checks_say_so(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    async with launched_simulators(tmp_path) as sims:
        code, out = await _kit(
            "--device-url",
            str(sims.device_path),
            "--report",
            str(report),
            "--only",
            "card-and-pin",
            "--only",
            "status-idle",
        )
    assert code == 0, out
    results = {c["id"]: c["status"] for c in json.loads(report.read_text(encoding="utf-8"))["checks"]}
    assert results == {"card-and-pin": "needs a person at the pad", "status-idle": "passed"}


async def test_without_test_keys_the_key_checks_are_skipped_and_no_key_goes_to_the_pad(tmp_path: Path) -> None:
    report, trace = tmp_path / "report.json", tmp_path / "trace.txt"
    checks = ["key-kcvs", "busy-rules", *KEY_LOADS]
    # A pad misbridge signed in (busy-rules needs a key in slot 1), whose working key the kit does not know.
    async with launched_simulators(tmp_path, pinpad_args=("--trace", str(trace), "--keys", "signed-in")) as sims:
        keys_before = await _pad_kcvs(sims.device_path)
        code, out = await _kit(
            "--device-url", str(sims.device_path), "--sim-control", str(sims.control_path),
            "--report", str(report), *(a for c in checks for a in ("--only", c)),
        )  # fmt: skip
        keys_after = await _pad_kcvs(sims.device_path)
    assert code == 0, out
    data = json.loads(report.read_text(encoding="utf-8"))
    results = {c["id"]: c for c in data["checks"]}
    assert set(results) == set(checks)
    for check in KEY_LOADS:
        assert results[check]["status"] == "skipped", results[check]
        assert "--test-keys" in results[check]["detail"], results[check]
    master_kcv, working_kcv = keys_before
    assert master_kcv == MASTER_KCV
    assert issued_day_key(working_kcv)  # the key the backend simulator issues POS01
    assert results["key-kcvs"]["status"] == "passed"
    assert results["key-kcvs"]["detail"] == f"MASTER_KEY_KCV {MASTER_KCV}, WORKING_KEY_KCV {working_kcv}"
    assert results["busy-rules"]["status"] == "passed"
    lines = trace.read_text(encoding="utf-8")
    assert "DeviceInfoRequest" in lines  # the trace saw the kit's commands...
    assert "LoadWorkingKey" not in lines  # ...and no key among them
    assert "LoadMasterKey" not in lines
    assert keys_after == keys_before
    assert data["after_run"] == []


#: Stands for the KCV of the working key a signed-in pad holds (the day's, known only at run time).
DAY_KEY = "the day's working key"


@pytest.mark.parametrize(
    ("keys", "found", "after", "skipped"),
    [
        # Slot 1 empty: the kit empties it again by loading the master key it found.
        ("provisioned", (MASTER_KCV, ""), (MASTER_KCV, ""), set()),
        # No master key: none to load a working key under, and no command takes the new one out.
        ("unprovisioned", ("", ""), (MASTER_KCV, ""), {"load-key-slot1-wrong-kcv", "load-key-slot1-right-kcv"}),
        # The key misbridge signed in for is no test key: the kit cannot load it again.
        ("signed-in", (MASTER_KCV, DAY_KEY), (MASTER_KCV, ""), set()),
    ],
)
async def test_the_key_checks_put_back_what_they_can_and_say_what_they_cannot(
    tmp_path: Path, keys: str, found: tuple[str, str], after: tuple[str, str], skipped: set[str]
) -> None:
    checks = {"key-kcvs", *(c for c in KEY_LOADS if c.startswith(("load-key-slot1", "load-master-key")))}
    async with launched_simulators(tmp_path, pinpad_args=("--keys", keys)) as sims:
        keys_before = await _pad_kcvs(sims.device_path)
        result = await run_kit(str(sims.device_path), only=checks, test_keys=True)
        keys_after = await _pad_kcvs(sims.device_path)
    if found[1] == DAY_KEY:
        assert issued_day_key(keys_before[1])  # the key the backend simulator issues POS01
        found = (found[0], keys_before[1])
    assert keys_before == found
    out = result.text()
    assert not result.failed, out
    assert {r.id for r in result.results if r.status == "skipped"} == skipped, out
    assert all("no master key (RESULT 06)" in r.detail for r in result.results if r.status == "skipped"), out
    assert keys_after == after
    if after == found:
        assert result.after == [], out
    else:
        assert result.after, out
        assert all("run misbridge pad provision" in step for step in result.after), out
        assert f"now holds MASTER_KEY_KCV {MASTER_KCV}, WORKING_KEY_KCV absent" in result.after[-1], out
        assert "AFTER THIS RUN" in out


async def test_the_list_needs_no_pad_and_a_run_needs_one() -> None:
    code, out = await _kit("--list")
    assert code == 0, out
    assert "session-start" in out
    assert "§3.1" in out
    assert [line.split()[0] for line in out.splitlines() if line.endswith("[--test-keys]")] == KEY_LOADS
    code, out = await _kit()
    assert code == 2
    assert "--device-url is required" in out
