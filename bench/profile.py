"""Profile the daemon under the redemption load of ``bench.redemptions``.

Starts both simulators and ``python -m misbridge serve`` as in the benchmark, warms up, then
attaches ``py-spy record`` to the daemon while redemptions run one after another, and prints
where the daemon spends its CPU: the inclusive and self share of the samples, by function.
``--gil`` (default) samples only the thread holding the GIL, which is the Python CPU the goal
is about; ``--wall`` samples every non-idle thread (includes fsync and socket waits).

Run: ``python -m bench.profile [--redemptions 600] [--top 40] [--raw FILE]``. Needs py-spy
(``make bench`` installs it into the venv); py-spy needs ptrace rights on the daemon (root, or
``kernel.yama.ptrace_scope = 0``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from bench.common import cpu_seconds, daemon, daemon_config, simulators
from bench.redemptions import WARMUP, bridge_once

_LINE_NUMBER = re.compile(r":\d+\)$")


def _frame_name(frame: str) -> str:
    # "func (path/file.py:123)" -> "func (path/file.py)": one row per function, not per line.
    return _LINE_NUMBER.sub(")", frame)


def summarise(raw_lines: Iterable[str], top: int) -> str:
    """Inclusive and self shares of py-spy's raw (collapsed-stack) output."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw_lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(frame) for frame in stack.split(";")]
        total += count
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    if not total:
        return "no samples (is the daemon doing any work? does py-spy have ptrace rights?)"
    lines = [f"{total} samples", "", "inclusive:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


async def profile(redemptions: int, raw: Path, gil_only: bool, rate: int) -> float:
    """Run the load under py-spy; returns the daemon's CPU ms per redemption while profiled."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with tempfile.TemporaryDirectory(prefix="misbridge-profile-") as tmp:
        workdir = Path(tmp)
        async with simulators(workdir) as sims:
            config, socket_port, http_port = daemon_config(workdir, sims.device_path, sims.backend_url, sims.key_file)
            async with daemon(config, socket_port, http_port, workdir / "daemon.log") as proc:
                for _ in range(WARMUP):
                    await bridge_once(socket_port)
                options = ["--gil"] if gil_only else []
                spy = await asyncio.create_subprocess_exec(
                    py_spy,
                    "record",
                    "--pid",
                    str(proc.pid),
                    "--rate",
                    str(rate),
                    "--format",
                    "raw",
                    "--output",
                    str(raw),
                    *options,
                    stdout=asyncio.subprocess.DEVNULL,
                )
                await asyncio.sleep(1.0)  # py-spy attaches
                cpu_before = cpu_seconds(proc.pid)
                for _ in range(redemptions):
                    await bridge_once(socket_port)
                cpu_ms = (cpu_seconds(proc.pid) - cpu_before) / redemptions * 1000
                spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
                await spy.wait()
    return cpu_ms


def main() -> None:
    """Profile and print the summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redemptions", type=int, default=600, help="redemptions while profiling (default 600)")
    parser.add_argument("--top", type=int, default=40, help="rows per list (default 40)")
    parser.add_argument("--rate", type=int, default=500, help="samples per second (default 500)")
    parser.add_argument(
        "--raw",
        type=Path,
        default=Path("daemon-profile.txt"),
        help="keep py-spy's collapsed stacks here (default daemon-profile.txt)",
    )
    parser.add_argument("--wall", action="store_true", help="sample every active thread, not only the GIL holder")
    args = parser.parse_args()
    cpu_ms = asyncio.run(profile(args.redemptions, args.raw, not args.wall, args.rate))
    print(f"daemon CPU while profiled: {cpu_ms:.2f} ms per redemption (py-spy adds a little)")
    print(summarise(args.raw.read_text(encoding="utf-8").splitlines(), args.top))


if __name__ == "__main__":
    main()
