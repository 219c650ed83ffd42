"""The state machine of `db/states.py` is the database's: the installed guards list exactly
its moves, every other move is refused by the SQL that would make it, and the test suite
reaches every declared move through public operations (run last: it reads what the other
modules' databases recorded, see `tests/transitions.py`)."""

from __future__ import annotations

import itertools
import os
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from db.engine import get_engine
from db.states import GUARDED, RunStatus, StepStatus, transition_pairs
from tests import transitions


async def test_installed_guards_list_exactly_the_declared_moves(env: dict[str, str]) -> None:
    async with get_engine().connect() as conn:
        for table, function in GUARDED.items():
            source = (
                await conn.execute(
                    text("SELECT prosrc FROM pg_proc WHERE proname = :f"), {"f": function}
                )
            ).scalar_one()
            array = source.split("ARRAY[")[1].split("]")[0]
            listed = sorted(p.strip("' \n") for p in array.split(","))
            assert listed == transition_pairs(table), f"{table}: write a migration for the change"


def _undeclared(table: str) -> list[tuple[str, str]]:
    states = [s.value for s in (RunStatus if table == "workflow_runs" else StepStatus)]
    declared = set(transition_pairs(table))
    return [
        (a, b)
        for a, b in itertools.product(states, states)
        if a != b and f"{a}>{b}" not in declared
    ]


@pytest.mark.parametrize("src,dst", _undeclared("workflow_runs"))
async def test_an_undeclared_run_move_is_refused(env: dict[str, str], src: str, dst: str) -> None:
    run_id = uuid.uuid4()
    async with get_engine().connect() as conn:
        await conn.execute(
            text(
                "INSERT INTO workflow_runs (id, workflow, workflow_version, params, status)"
                " VALUES (:id, 'probe', 1, '{}', :s)"
            ),
            {"id": run_id, "s": src},
        )
        with pytest.raises(IntegrityError, match="not a move of the state machine"):
            await conn.execute(
                text("UPDATE workflow_runs SET status = :d WHERE id = :id"),
                {"d": dst, "id": run_id},
            )
        await conn.rollback()


@pytest.mark.parametrize("src,dst", _undeclared("step_runs"))
async def test_an_undeclared_step_move_is_refused(env: dict[str, str], src: str, dst: str) -> None:
    run_id = uuid.uuid4()
    async with get_engine().connect() as conn:
        await conn.execute(
            text(
                "INSERT INTO workflow_runs (id, workflow, workflow_version, params)"
                " VALUES (:id, 'probe', 1, '{}')"
            ),
            {"id": run_id},
        )
        await conn.execute(
            text("INSERT INTO step_runs (run_id, key, step, status) VALUES (:id, 'a', 'a', :s)"),
            {"id": run_id, "s": src},
        )
        with pytest.raises(IntegrityError, match="not a move of the state machine"):
            await conn.execute(
                text("UPDATE step_runs SET status = :d WHERE run_id = :id"),
                {"d": dst, "id": run_id},
            )
        await conn.rollback()


def declared_moves() -> set[tuple[str, str, str]]:
    return {
        (table, src, dst)
        for table in GUARDED
        for src, dst in (p.split(">") for p in transition_pairs(table))
    }


def test_the_suite_makes_every_declared_move_through_public_operations() -> None:
    """Run last in a serial run; under pytest-xdist the controller makes the same check
    over every worker's records when the session ends (tests/conftest.py)."""
    if transitions.SHARED in os.environ:
        pytest.skip("checked over all xdist workers' records when the session ends")
    ran = {transitions.module_of(c) for c in transitions.CONTRIBUTORS}
    if not ran >= transitions.NEEDED:
        needed = sorted(transitions.NEEDED)
        pytest.skip(f"needs the whole suite (the modules {needed}) to have run first")
    missing = sorted(declared_moves() - transitions.SEEN)
    assert not missing, f"declared moves no test made: {missing}"
    assert not transitions.SEEN - declared_moves()  # the guards would have refused them
