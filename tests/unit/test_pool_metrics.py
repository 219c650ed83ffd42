"""The pool metrics keep their series bounded whatever tenants clients send: past
TENANT_SERIES, the least active tenants fold into "other", and no count is lost."""

from __future__ import annotations

from typing import Any

from api.metrics import TENANT_SERIES, WAIT_BUCKETS, _pools


def _families(tenants: int) -> dict[str, Any]:
    slots = [{"held": True, "tenant": f"t{i}"} for i in range(tenants)]
    waiting = [{"tenant": f"t{i}", "priority": 5, "count": i + 1} for i in range(tenants)]
    counts: dict[tuple[str, str], int] = {}
    for i in range(tenants):
        counts[("slot_wait_ms_sum", f"gpu|t{i}")] = 1000
        counts[("slot_wait_bucket", f"gpu|t{i}|{WAIT_BUCKETS[0]:g}")] = 1
    view = {"gpu": {"slots": slots, "waiting": waiting}}
    return {family.name: family for family in _pools(view, counts)}


def _tenants(family: Any) -> set[str]:
    return {s.labels["tenant"] for s in family.samples if "tenant" in s.labels}


def test_a_flood_of_tenants_folds_into_other_and_keeps_every_count() -> None:
    found = _families(200)
    for name in ("reelflow_pool_slots_held", "reelflow_pool_waiting", "reelflow_slot_wait_seconds"):
        assert len(_tenants(found[name])) <= TENANT_SERIES + 1, name
        assert "other" in _tenants(found[name]), name
    held = found["reelflow_pool_slots_held"].samples
    assert sum(s.value for s in held) == 200
    waiting = found["reelflow_pool_waiting"].samples
    assert sum(s.value for s in waiting) == sum(range(1, 201))
    counted = [s for s in found["reelflow_slot_wait_seconds"].samples if s.name.endswith("_count")]
    assert sum(s.value for s in counted) == 200


def test_a_few_tenants_keep_their_own_series() -> None:
    found = _families(3)
    assert _tenants(found["reelflow_pool_waiting"]) == {"t0", "t1", "t2"}
