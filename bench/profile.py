"""Where the time goes on one hot path: py-spy samples the (single) Ostiary worker while
wrk drives the case, then prints the functions holding the most samples, inclusive and
self, and writes the collapsed stacks (for a flame graph) to ``<out>.txt`` (by default
in the temporary directory).

    python bench/profile.py refresh_token [--seconds 20] [--out profile-out]

py-spy (``pip install py-spy``) needs to be allowed to read the worker's memory (same user,
ptrace not forbidden).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import psql, serving, wrk
from bench.ostiary_setup import prepare
from bench.suite import SCRIPTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", choices=list(SCRIPTS))
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ostiary-profile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--gil", action="store_true", help="sample only the thread holding the GIL: where the Python time goes"
    )
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with tempfile.TemporaryDirectory() as work:
        setup, _port = prepare(Path(work), runs=1, per_run=3_000 * args.seconds, database="ostiary_bench_profile")
        with serving(setup.env, 1) as server:
            (pid,) = server.worker_pids()
            script, path = SCRIPTS[args.case]
            wrk(script, server.base_url + path, seconds=2, connections=args.connections, threads=1,
                env=setup.wrk_env(args.case, 0, server))  # fmt: skip
            args.out.parent.mkdir(parents=True, exist_ok=True)
            raw = args.out.with_suffix(".txt")
            spy = subprocess.Popen(
                [py_spy, "record", "--pid", str(pid), "--duration", str(args.seconds), "--rate", "250",
                 "--format", "raw", "--output", str(raw), "--nonblocking", *(["--gil"] if args.gil else [])],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            run = wrk(script, server.base_url + path, seconds=args.seconds, connections=args.connections, threads=1,
                      env=setup.wrk_env(args.case, 1, server))  # fmt: skip
            _, errors = spy.communicate(timeout=args.seconds + 60)
            if spy.returncode != 0:
                sys.exit(f"py-spy failed: {errors}")
        psql("test", f'DROP DATABASE IF EXISTS "{setup.database}" WITH (FORCE)')
    print(f"{args.case}: {run.rps:,.0f} req/s while sampled; collapsed stacks in {raw}\n")
    summarise(raw, args.top)


def summarise(raw: Path, top: int) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        frames = [_short(frame) for frame in stack.split(";")]
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    print(f"{total} samples\n\n| inclusive % | function |\n|---:|---|")
    for frame, samples in inclusive.most_common(top):
        print(f"| {100 * samples / total:.1f} | `{frame}` |")
    print("\n| self % | function |\n|---:|---|")
    for frame, samples in own.most_common(top):
        print(f"| {100 * samples / total:.1f} | `{frame}` |")


def _short(frame: str) -> str:
    """``function (path/to/module.py:line)`` -> ``function (module.py)``."""
    name, _, where = frame.partition(" (")
    module = where.rsplit("/", 1)[-1].split(":")[0].rstrip(")")
    return f"{name} ({module})"


if __name__ == "__main__":
    main()
