"""How an input key is formed from its parts: the one definition the claim's SQL
(`db.claims`) and Python (`steps.engine.keys`, for plans and dispatch) both follow.

key = sha256 of the lines: KEY_FORMAT, the step's name, its code version, the digest of the
params it reads, its item's digest ('' for a single step), and its inputs as `name=digest`
lines sorted by name (bytewise), a mapped input's digest being the sha256 of its items'
output digests joined by commas in item order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

#: Bumped if the way keys are formed ever changes: no key of the old form matches.
KEY_FORMAT = "reelflow-key-1"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def mapped_digest(item_digests: Iterable[str]) -> str:
    """The digest of a mapped step's outputs, read as one list (its items in order)."""
    return sha256_text(",".join(item_digests))


def input_key(
    *,
    step: str,
    code_version: str,
    params_digest: str,
    item_digest: str | None,
    inputs: Mapping[str, str],
) -> str:
    """The key of one execution. `inputs`: dependency name -> its output digest."""
    deps = "\n".join(f"{name}={inputs[name]}" for name in sorted(inputs))
    parts = [KEY_FORMAT, step, code_version, params_digest, item_digest or "", deps]
    return sha256_text("\n".join(parts))
