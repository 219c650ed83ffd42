"""Does a resume cost more when more of the run already succeeded? It should not.

Two probe runs that failed at their last step, `e`: one with 20 succeeded upstream steps,
one with 1,000 (`c` mapped 18 and 998 wide). Each round resumes both (the whole operation:
lock, reset, compile, the outbox intent, the publish) and puts them back as they were,
alternating which goes first. No worker runs: the messages wait in the queue. Prints one
JSON line last with both medians and their ratio.

    python bench/resume.py [--rounds 40]

Uses DATABASE_URL / REDIS_URL when set, the embedded servers otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import servers

PARAMS = {"width": 0, "sleep_ms": 0, "max_attempts": None, "grow": 0}


async def make_failed_run(succeeded: int) -> uuid.UUID:
    """A probe run as a failure at `e` leaves it: every other step succeeded with output."""
    from sqlalchemy import text

    from db.engine import get_engine

    run_id, width = uuid.uuid4(), succeeded - 2  # a, b and the c items
    rows = [("a", "a", None), ("b", "b", None), ("d", "d", None)]
    rows += [(f"c[{i}]", "c", i) for i in range(width)]
    async with get_engine().begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))  # no guards
        await conn.execute(
            text(
                "INSERT INTO workflow_runs (id, workflow, workflow_version, params, status, maps)"
                " VALUES (:id, 'probe', 1, CAST(:p AS jsonb), 'failed', CAST(:m AS jsonb))"
            ),
            {"id": run_id, "p": json.dumps({**PARAMS, "width": width}), "m": f'{{"c": {width}}}'},
        )
        await conn.execute(
            text(
                "INSERT INTO step_runs (run_id, key, step, item_index, status, attempts, output)"
                " SELECT :id, k, s, i, 'succeeded', 1, '{\"pid\": 1, \"value\": 2}'::jsonb"
                " FROM unnest(CAST(:keys AS text[]), CAST(:steps AS text[]),"
                " CAST(:idx AS int[])) AS t(k, s, i)"
            ),
            {
                "id": run_id,
                "keys": [r[0] for r in rows],
                "steps": [r[1] for r in rows],
                "idx": [r[2] for r in rows],
            },
        )
        await conn.execute(
            text(
                "INSERT INTO step_runs (run_id, key, step, status, attempts)"
                " VALUES (:id, 'e', 'e', 'failed', 1)"
            ),
            {"id": run_id},
        )
    return run_id


async def put_back(run_id: uuid.UUID) -> None:
    """The run as it was before the resume (bench bookkeeping, outside the guards)."""
    from sqlalchemy import text

    from db.engine import get_engine

    async with get_engine().begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(
            text("UPDATE workflow_runs SET status = 'failed' WHERE id = :id"), {"id": run_id}
        )
        await conn.execute(
            text("UPDATE step_runs SET status = 'failed' WHERE run_id = :id AND key = 'e'"),
            {"id": run_id},
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, servers(Path(tmp)):
        print(json.dumps(measure(args.rounds)))


def measure(rounds: int) -> dict[str, object]:
    from reelflow.logs import configure_logging
    from reelflow.settings import get_settings
    from steps.engine import bridge
    from workflows.runs.operations import resume_run

    configure_logging(get_settings())
    runs = {n: bridge.run(make_failed_run(n)) for n in (20, 1000)}
    times: dict[int, list[float]] = {20: [], 1000: []}
    for round_ in range(rounds + 3):  # three warm-up rounds
        order = (20, 1000) if round_ % 2 else (1000, 20)
        for n in order:
            started = time.perf_counter()
            bridge.run(resume_run(runs[n], actor="bench"))
            elapsed = time.perf_counter() - started
            bridge.run(put_back(runs[n]))
            if round_ >= 3:
                times[n].append(elapsed * 1000)
    small, large = statistics.median(times[20]), statistics.median(times[1000])
    return {
        "rounds": rounds,
        "resume_ms_20_upstream": round(small, 2),
        "resume_ms_1000_upstream": round(large, 2),
        "ratio": round(large / small, 3),
    }


if __name__ == "__main__":
    main()
