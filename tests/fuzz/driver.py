"""Run one fuzz target under atheris (coverage-guided, libFuzzer inside).

    python -m tests.fuzz.driver {link|envelope|request} --runs 1000000 --seed 1 --workdir DIR
    python -m tests.fuzz.driver {link|envelope|request} --replay DIR/findings/FILE

misbridge's modules and the targets are instrumented for coverage as they are imported, so
nothing of misbridge may be imported before :func:`main` runs.  A finding does not stop the run:
each distinct one (exception type and the innermost misbridge line it came from) is kept with its
shortest reproducer in ``DIR/findings/``, listed in ``DIR/findings.json`` as soon as it is seen
(libFuzzer ends the process without unwinding, so nothing can be written at the end).  libFuzzer
itself reports the executions (``Done N runs``), coverage (``cov:``) and features (``ft:``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

#: Per input: libFuzzer calls an input that runs longer than this a hang (itself a finding).
INPUT_TIMEOUT_S = 30
_MESSAGE_CHARS = 300
_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Finding:
    """One distinct finding and its shortest reproducer so far."""

    signature: str
    error: str
    where: str
    message: str
    reproducer: str
    size: int
    first_seen_at: int
    count: int = 1


def _where(tb: TracebackType | None) -> str:
    # The innermost line of misbridge, else of the target itself (a stage of the check that
    # calls a builtin, such as encoding an answer), as a path from the repository root.  A walk
    # of the frames, not traceback.extract_tb: a RecursionError has a thousand of them, and
    # repeats of a known finding must stay cheap.
    last: tuple[str, int, str] | None = None
    inside: tuple[str, int, str] | None = None
    while tb is not None:
        code = tb.tb_frame.f_code
        last = (code.co_filename, tb.tb_lineno, code.co_name)
        if "/misbridge/" in code.co_filename:
            inside = last
        tb = tb.tb_next
    frame = inside or last
    if frame is None:
        return "?"
    path = Path(frame[0])
    shown = path.relative_to(_ROOT) if path.is_relative_to(_ROOT) else path
    return f"{shown}:{frame[1]} {frame[2]}"


class FindingRecorder:
    """Keeps each distinct finding once, with the shortest input that caused it."""

    def __init__(self, workdir: Path, target: str) -> None:
        self._workdir = workdir
        self._folder = workdir / "findings"
        self._index = workdir / "findings.json"
        self._target = target
        self._findings: dict[str, Finding] = {}
        self.executions = 0

    def record(self, data: bytes, err: BaseException) -> None:
        """Note ``err`` raised by input ``data``; rewrite the index when something new was learnt."""
        error, where = type(err).__name__, _where(err.__traceback__)
        signature = hashlib.sha256(f"{error} {where}".encode()).hexdigest()[:12]
        known = self._findings.get(signature)
        if known is not None:
            known.count += 1
            if len(data) >= known.size:
                return
            known.size = len(data)
            self._save(known, data)
            return
        name = f"findings/{self._target}-{signature}.bin"
        finding = Finding(signature, error, where, repr(str(err))[:_MESSAGE_CHARS], name, len(data), self.executions)
        self._findings[signature] = finding
        print(f"FINDING {self._target} {error} at {where}: {finding.message}", file=sys.stderr)  # noqa: T201
        self._save(finding, data)

    def _save(self, finding: Finding, data: bytes) -> None:
        self._folder.mkdir(parents=True, exist_ok=True)
        (self._workdir / finding.reproducer).write_bytes(data)
        listing = [asdict(f) for f in self._findings.values()]
        self._index.write_text(json.dumps(listing, indent=2) + "\n", encoding="utf-8")


def _arguments(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The driver's own options, and the libFuzzer flags given after ``--``."""
    ours, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.driver", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=("link", "envelope", "request"))
    parser.add_argument("--runs", type=int, default=1_000_000, help="executions (libFuzzer -runs)")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed (same seed, same run)")
    parser.add_argument("--workdir", type=Path, help="corpus, dictionary and findings go here (needed to fuzz)")
    parser.add_argument("--replay", type=Path, metavar="FILE", help="run the check once on FILE, show its traceback")
    parser.epilog = "Flags after -- go to libFuzzer as they are (e.g. -- -max_total_time=60)."
    return parser.parse_args(ours), extra


def main(argv: list[str] | None = None) -> None:
    """Fuzz one target; libFuzzer exits the process when the runs are done."""
    args, libfuzzer_flags = _arguments(sys.argv[1:] if argv is None else argv)
    if args.replay is not None:
        # No atheris, no instrumentation: the plain check, and a finding's traceback as Python prints it.
        replayed: Any = importlib.import_module("tests.fuzz.targets")
        replayed.TARGETS[args.target].check(args.replay.read_bytes())
        print(f"{args.replay}: no finding")  # noqa: T201 - the answer to the command
        return
    if args.workdir is None:
        sys.exit("--workdir is needed to fuzz")
    atheris: Any = importlib.import_module("atheris")
    with atheris.instrument_imports(include=["misbridge", "tests.fuzz.targets", "tests.fuzz.jsonish"]):
        targets: Any = importlib.import_module("tests.fuzz.targets")
    seeds: Any = importlib.import_module("tests.fuzz.seeds")
    target = targets.TARGETS[args.target]
    workdir: Path = args.workdir
    corpus, seed_dir, dictionary = workdir / "corpus", workdir / "seeds", workdir / "dictionary.txt"
    corpus.mkdir(parents=True, exist_ok=True)
    seeds.write_seeds(args.target, seed_dir)
    seeds.write_dictionary(args.target, dictionary)
    recorder = FindingRecorder(workdir, args.target)
    check = target.check

    def test_one_input(data: bytes) -> None:
        recorder.executions += 1
        try:
            check(data)
        except Exception as err:  # noqa: BLE001 - every escaping exception is a finding, recorded and counted
            recorder.record(data, err)

    flags = [
        f"-runs={args.runs}",
        f"-seed={args.seed}",
        f"-max_len={target.max_len}",
        f"-dict={dictionary}",
        f"-timeout={INPUT_TIMEOUT_S}",
        f"-artifact_prefix={workdir}/",
        "-print_final_stats=1",
        *libfuzzer_flags,
    ]
    # libFuzzer writes new inputs into the first folder only: the seeds stay as generated.
    atheris.Setup([sys.argv[0], *flags, str(corpus), str(seed_dir)], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
