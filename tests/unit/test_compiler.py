"""The compiler is pure: rows in, canvas out. Compare canvases as data."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from celery import group
from celery.canvas import _chain, _chord

from db.states import StepStatus
from workflows.definition.canvas import task_id
from workflows.definition.compiler import NotDispatchable, compile_run
from workflows.definition.registry import get_workflow

RUN = uuid.UUID("00000000-0000-0000-0000-000000000001")


@dataclass(frozen=True)
class Row:
    key: str
    step: str
    status: StepStatus
    item_index: int | None = None


def rows(width: int, failed: set[str] = frozenset(), pending: set[str] = frozenset()) -> list[Row]:  # type: ignore[assignment]
    def status(key: str) -> StepStatus:
        if key in failed:
            return StepStatus.FAILED
        if key in pending:
            return StepStatus.PENDING
        return StepStatus.SUCCEEDED

    out = [Row(k, k, status(k)) for k in ("a", "b", "d", "e")]
    out += [Row(f"c[{i}]", "c", status(f"c[{i}]"), i) for i in range(width)]
    return out


def keys_of(sig: object) -> list[str]:
    if isinstance(sig, (_chain, group)):
        return [k for t in sig.tasks for k in keys_of(t)]
    if isinstance(sig, _chord):
        return [k for t in sig.tasks for k in keys_of(t)] + keys_of(sig.body)
    return [sig.args[1]]  # type: ignore[attr-defined]


def test_new_run_compiles_to_chain_with_expander_in_chain_position() -> None:
    fresh = rows(0, pending={"a", "b", "d", "e"})
    compiled = compile_run(get_workflow("probe"), RUN, fresh, {}, generation=0)
    sig = compiled.canvas
    assert isinstance(sig, _chain)
    names = [t.task for t in sig.tasks]
    assert names == ["reelflow.step.a", "reelflow.step.b", "reelflow.expand_map", "reelflow.step.e"]
    assert sig.tasks[2].args == (str(RUN), "c", 0)
    assert compiled.heads == ["a"] and compiled.expanders == ["c"]
    assert all(t.immutable for t in sig.tasks)


def test_resume_of_one_failed_render_is_a_chord_over_it_then_its_join() -> None:
    r = rows(8, pending={"c[5]", "d", "e"})  # the resume reset the failed render
    compiled = compile_run(get_workflow("probe"), RUN, r, {"c": 8}, generation=1)
    sig = compiled.canvas
    assert isinstance(sig, _chain)
    chord_sig, tail = sig.tasks
    assert isinstance(chord_sig, _chord)
    assert [t.args[1] for t in chord_sig.tasks] == ["c[5]"]
    assert chord_sig.body.args[1] == "d" and tail.args[1] == "e"
    assert compiled.keys == ["c[5]", "d", "e"] and compiled.heads == ["c[5]"]
    assert chord_sig.tasks[0].id == task_id(RUN, "c[5]", 1)


def test_all_headers_done_compiles_to_body_alone() -> None:
    compiled = compile_run(get_workflow("probe"), RUN, rows(3, pending={"d", "e"}), {"c": 3}, 2)
    assert keys_of(compiled.canvas) == ["d", "e"]
    assert not isinstance(compiled.canvas.tasks[0], _chord)  # type: ignore[union-attr]


def test_everything_succeeded_compiles_to_nothing() -> None:
    compiled = compile_run(get_workflow("probe"), RUN, rows(3), {"c": 3}, 0)
    assert compiled.canvas is None and compiled.keys == []


def test_a_step_no_message_can_claim_is_refused() -> None:
    with pytest.raises(NotDispatchable, match="c\\[1\\] is failed"):
        compile_run(get_workflow("probe"), RUN, rows(2, failed={"c[1]"}), {"c": 2}, 0)


def test_a_map_whose_source_reran_expands_again() -> None:
    # Items superseded, the map forgotten: the expander comes back in chain position.
    compiled = compile_run(get_workflow("probe"), RUN, rows(0, pending={"b", "d", "e"}), {}, 3)
    assert [t.task for t in compiled.canvas.tasks][:2] == [  # type: ignore[union-attr]
        "reelflow.step.b",
        "reelflow.expand_map",
    ]
    assert compiled.expanders == ["c"]


def test_an_empty_map_compiles_to_its_join() -> None:
    compiled = compile_run(get_workflow("probe"), RUN, rows(0, pending={"d", "e"}), {"c": 0}, 1)
    assert keys_of(compiled.canvas) == ["d", "e"] and compiled.expanders == []


def test_task_ids_are_deterministic_per_generation() -> None:
    assert task_id(RUN, "a", 0) == task_id(RUN, "a", 0)
    assert task_id(RUN, "a", 0) != task_id(RUN, "a", 1)


def test_only_chord_header_members_keep_celery_results() -> None:
    r = rows(2, pending={"c[1]", "d", "e"})
    sig = compile_run(get_workflow("probe"), RUN, r, {"c": 2}, 0)
    chord_sig, tail = sig.canvas.tasks  # type: ignore[union-attr]
    assert not chord_sig.tasks[0].options.get("ignore_result")  # counted by the chord
    assert chord_sig.body.options["ignore_result"] is True
    assert tail.options["ignore_result"] is True
    assert tail.options["task_id"] == task_id(RUN, "e", 0)


@pytest.mark.parametrize("key", ["c[0]", "d"])
def test_downstream_of_map_and_join(key: str) -> None:
    wf = get_workflow("probe")
    step = key.split("[")[0]
    assert wf.downstream(step) == ({"d", "e"} if step == "c" else {"e"})


def test_a_map_no_step_reads_is_refused_at_definition() -> None:
    """Its items exist only once it expands: nothing waiting for them, the run would count
    as succeeded as soon as the map's source did."""
    from steps.probe import ProbeParams, a, b, c
    from workflows.definition.spec import chain, map
    from workflows.definition.workflow import Workflow

    with pytest.raises(ValueError, match="nothing reads the results of map c"):
        Workflow(name="dangling", version=1, params_model=ProbeParams,
                 canvas=chain(a, b, map(c, over="b.items")))  # fmt: skip
