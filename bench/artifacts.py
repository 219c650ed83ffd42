"""What does object storage cost? The same short_video run with artifacts in a local folder
and in S3-compatible storage (moto's server over HTTP on this machine), interleaved round
by round on the same database, broker and worker settings. Prints one JSON line per round
and a summary line last: median run times and their ratio (s3 / local).

    python bench/artifacts.py [--rounds 3]

Uses DATABASE_URL / REDIS_URL when set, the embedded servers otherwise. The S3 side pays
for every upload and download a multi-host deployment pays (each step's inputs are
fetched into scratch, its outputs uploaded), against a server on loopback: a remote
bucket adds network time on top.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import _with_worker, finished, servers
from tests.support import S3Server, patched_environment

VIDEO = {"length_seconds": 15, "width": 360, "height": 640, "fps": 24, "topic": "bees"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        os.environ.setdefault("LOG_FORMAT", "json")
        s3 = S3Server(tmp / "moto.log")
        s3.start()
        modes = {
            "local": {
                "ARTIFACT_ROOT": str(tmp / "artifacts"),
                "PUBLISH_DIR": str(tmp / "published"),
            },
            "s3": {
                **s3.env(f"bench-{uuid.uuid4().hex[:6]}"),
                "ARTIFACT_ROOT": str(tmp / "unused"),
                "SCRATCH_DIR": str(tmp / "scratch"),
            },
        }
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        try:
            with servers(tmp):
                for round_ in range(args.rounds + 1):  # round 0 warms both up
                    for mode, env in modes.items():
                        elapsed = _one_run(tmp / mode, env)
                        if round_:
                            times[mode].append(elapsed)
                    if round_:
                        print(json.dumps({m: round(t[-1], 3) for m, t in times.items()}))
        finally:
            s3.stop()

    local, remote = (statistics.median(times[m]) for m in ("local", "s3"))
    summary = {
        "rounds": args.rounds,
        "video": VIDEO,
        "local_s": round(local, 3),
        "s3_s": round(remote, 3),
        "ratio": round(remote / local, 3),
        "pid": os.getpid(),
    }
    print(json.dumps(summary))


def _one_run(tmp: Path, env: dict[str, str]) -> float:
    """One short_video run with a worker started for these settings; seconds from the
    run's creation to its success."""
    from steps.engine import bridge
    from workflows.runs.operations import start_run

    tmp.mkdir(parents=True, exist_ok=True)
    with patched_environment(env):
        worker = _with_worker(tmp, None, 2, "default,gpu")
        next(worker)
        try:
            started = time.perf_counter()
            run = bridge.run(start_run("short_video", VIDEO, actor="bench")).run
            bridge.run(finished(run.id, poll=0.05, timeout=600))
            return time.perf_counter() - started
        finally:
            next(worker, None)


if __name__ == "__main__":
    main()
