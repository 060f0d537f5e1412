"""Run every check against one pad and write the report: ``misbridge conformance``.

Three phases, each owning the port in turn: misbridge's driver (connect, commands, customer steps,
unplug), then the kit as a raw host (session start, link rules, malformed commands, busy rules,
result codes, keys), then the timing checks over everything measured. A check that needs a person
runs only when one is there (:mod:`~misbridge.tools.conformance.people`); a check that loads keys
only when the technician says the pad holds the §11 test keys (``--test-keys``): without it the
kit sends no key to the pad.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime

from misbridge.errors import DeviceError, MisbridgeError, PadInUse
from misbridge.telemetry.logs import configure_logging
from misbridge.tools.conformance.base import Check, Failed, Run, Skipped
from misbridge.tools.conformance.command_checks import COMMAND_CHECKS
from misbridge.tools.conformance.driver_checks import CONNECT_S, DRIVER_CHECKS, open_driver
from misbridge.tools.conformance.key_checks import KEY_CHECKS
from misbridge.tools.conformance.line import RawHost
from misbridge.tools.conformance.link_checks import LINK_CHECKS
from misbridge.tools.conformance.options import add_arguments
from misbridge.tools.conformance.people import Act, AtTheTerminal, Nobody, Person, SimulatorScript
from misbridge.tools.conformance.report import CheckResult, Report, Status
from misbridge.transport.registry import ensure_port_free

#: The timing checks judge what every raw check before them measured, so they come last.
_TIMING = {"timing-turnaround", "timing-reply"}
RAW_CHECKS: list[Check] = [
    *(c for c in LINK_CHECKS if c.id not in _TIMING),
    *COMMAND_CHECKS,
    *KEY_CHECKS,
    *(c for c in LINK_CHECKS if c.id in _TIMING),
]
ALL_CHECKS: list[Check] = [*DRIVER_CHECKS, *RAW_CHECKS]
#: Why a key check did not run (``Check.keys`` without ``--test-keys``).
NO_TEST_KEYS = (
    "loads keys into the pad (or judges a key the kit loaded): only with --test-keys (TEST_KEYS=1),"
    " on a test pad holding the test keys of §11"
)


async def run_check(check: Check, run: Run) -> CheckResult:
    """Run one check and turn whatever happened into its result."""
    if check.keys and not run.test_keys:
        return CheckResult(check.id, check.title, check.section, Status.SKIPPED, NO_TEST_KEYS)
    missing = [act for act in check.acts if not run.person.can(act)]
    if missing:
        status = Status.PERSON if isinstance(run.person, Nobody) else Status.SKIPPED
        why = "; ".join(a.value for a in missing)
        detail = why if status is Status.PERSON else f"cannot be had on demand: {why}"
        return CheckResult(check.id, check.title, check.section, status, detail)
    began = time.monotonic()

    def result(status: Status, detail: str = "", expected: str = "", got: str = "") -> CheckResult:
        took = time.monotonic() - began
        return CheckResult(check.id, check.title, check.section, status, detail, expected, got, took)

    try:
        async with asyncio.timeout(check.limit_s):
            detail = await check.run(run)
    except Failed as err:
        return result(Status.FAILED, err.note, err.expected, err.got)
    except Skipped as err:
        return result(Status.SKIPPED, str(err))
    except TimeoutError:
        return result(Status.FAILED, "", f"the check done within {check.limit_s:g} s", "no answer in time")
    except MisbridgeError as err:
        return result(Status.FAILED, "", "the exchange the rule describes", f"{type(err).__name__}: {err.message}")
    except OSError as err:
        return result(Status.FAILED, "", "the port and the person's channel usable", f"{type(err).__name__}: {err}")
    except ValueError as err:
        return result(Status.FAILED, "", "the exchange the rule describes", f"ValueError: {err}")
    return result(Status.PASSED, detail)


async def run_kit(
    url: str,
    *,
    baudrate: int = 115200,
    person: Person | None = None,
    only: set[str] | None = None,
    progress: bool = False,
    test_keys: bool = False,
) -> Report:
    """Every check (or those named in ``only``) against the pad at ``url``; the report.

    ``test_keys``: the pad holds the §11 test keys, so the checks that load keys run (and the kit
    puts back the keys it found, or the report's ``after`` says what to do).
    """
    run = Run(url, baudrate, person or Nobody(), test_keys)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    report = Report(url, run.person.name, started, run.pad, after=run.after)
    began = time.monotonic()

    async def phase(checks: list[Check]) -> None:
        for check in checks:
            if only is not None and check.id not in only:
                continue
            outcome = await run_check(check, run)
            report.results.append(outcome)
            if progress:
                sys.stderr.write(f"  {outcome.status.value:<26} {check.id}\n")

    try:
        if only is not None and "driver-connect" not in only and only & {c.id for c in DRIVER_CHECKS}:
            # The connection is driver-connect's to judge; the other driver checks need it anyway.
            await (await open_driver(run)).wait_connected(CONNECT_S)
        await phase(DRIVER_CHECKS)
    finally:
        driver = run.notes.pop("driver", None)
        if driver is not None:
            await driver.stop()
    try:
        run.host = await RawHost.open(url, baudrate)
    except (DeviceError, MisbridgeError) as err:
        for check in RAW_CHECKS:
            if only is None or check.id in only:
                report.results.append(
                    CheckResult(
                        check.id, check.title, check.section, Status.FAILED, "", f"the port {url} open", err.message
                    )
                )
    else:
        try:
            await phase(RAW_CHECKS)
        finally:
            await run.host.aclose()
    report.duration_s = time.monotonic() - began
    return report


def listing() -> str:
    """One line per check: id, section, title, and whether it needs a person or the test keys."""
    return "\n".join(
        f"{c.id:<28} §{c.section:<12} {c.title}"
        f"{'  [needs a person]' if set(c.acts) - {Act.STAY_AWAY} else ''}{'  [--test-keys]' if c.keys else ''}"
        for c in ALL_CHECKS
    )


def main(args: argparse.Namespace) -> int:
    """Run the kit as the options say; 0 when no check failed, 1 otherwise, 2 when nothing could be checked."""
    if args.list:
        sys.stdout.write(listing() + "\n")
        return 0
    if not args.device_url:
        sys.stderr.write("misbridge conformance: --device-url is required (the pad to check)\n")
        return 2
    try:
        asyncio.run(ensure_port_free(args.device_url, baudrate=args.baudrate))
    except PadInUse as busy:
        # Not a verdict on the pad: without this every check would fail on a port it never had.
        sys.stderr.write(f"misbridge conformance: {busy.message}\n")
        return 2
    person: Person
    if args.sim_control:
        person = SimulatorScript(args.sim_control)
    elif args.customer:
        person = AtTheTerminal()
    else:
        person = Nobody()
    sys.stderr.write(f"mispos-v1 conformance kit: {len(ALL_CHECKS)} checks against {args.device_url}\n")
    only = set(args.only) if args.only else None
    report = asyncio.run(
        run_kit(
            args.device_url, baudrate=args.baudrate, person=person, only=only, progress=True, test_keys=args.test_keys
        )
    )
    text = report.text()
    sys.stdout.write(text + "\n")
    report.write_json(args.report)
    if args.text:
        args.text.write_text(text + "\n", encoding="utf-8")
    sys.stderr.write(f"\nJSON report: {args.report}\n")
    return 1 if report.failed else 0


def cli(argv: list[str] | None = None) -> int:
    """``python -m misbridge.tools.conformance``."""
    parser = argparse.ArgumentParser(prog="misbridge conformance", description=__doc__.splitlines()[0])
    add_arguments(parser)
    configure_logging("CRITICAL")
    return main(parser.parse_args(argv))
