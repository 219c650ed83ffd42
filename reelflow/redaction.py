"""Secrets never reach a log: a structlog processor that rewrites every string of a line
(its message, its fields, its rendered traceback) before it is written, whatever wrote it.

Two nets, because a secret can arrive in any shape:
- the exact values this process knows are secret (the passwords in DATABASE_URL and the
  broker and Redis URLs, API and metrics tokens, the S3 secret key), wherever they appear;
- the shapes secrets take in text: `scheme://user:password@host`, `Authorization: Bearer
  ...` or `Basic ...`, and `password=...` / `"token": "..."` pairs, as reprs and driver
  messages write them.
A field whose own name says it holds a secret (`password`, `authorization`, ...) is
replaced whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urlsplit

MASK = "***"

_SECRET_NAME = re.compile(
    r"(?:pass(?:word|wd)?|pwd|secret|token|api[_-]?key|auth(?:orization)?|credentials?"
    r"|cookie|session[_-]?id|private[_-]?key|access[_-]?key)",
    re.IGNORECASE,
)
#: Field names that merely contain a secret-ish word but hold none.
_HARMLESS_NAME = re.compile(r"^(?:token_count|tokens|max_tokens|auth_scheme)$", re.IGNORECASE)

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # scheme://user:password@host -> scheme://user:***@host
    (re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@'\"]*:)[^\s@/'\"]+@"),
     rf"\g<head>{MASK}@"),
    # an Authorization header's whole value, whatever its scheme and case
    (re.compile(
        r"(?P<head>\b(?:proxy-)?authorization['\"]?\s*[:=,]\s*(?:b?['\"])?)"
        r"(?P<value>[^'\";)}\]&\r\n]+)",
        re.IGNORECASE,
    ), rf"\g<head>{MASK}"),
    # signatures and digests inside a header's value (SigV4 Signature=, Digest response=)
    (re.compile(r"(?P<head>\b(?:signature|response)=\"?)[0-9A-Fa-f]{16,}", re.IGNORECASE),
     rf"\g<head>{MASK}"),
    # credentials after their scheme: Bearer in any case (HTTP schemes are
    # case-insensitive); Basic/Token/Digest capitalised, as prose rarely writes them
    (re.compile(r"(?P<head>\b(?i:bearer)\s+)[A-Za-z0-9._~+/=:-]{4,}"), rf"\g<head>{MASK}"),
    (re.compile(r"(?P<head>\b(?:Basic|Token|Digest|BASIC|TOKEN|DIGEST)\s+)[A-Za-z0-9._~+/=:-]{4,}"),
     rf"\g<head>{MASK}"),
    # name=value, name: value, 'name': 'value', "name": "value", name='value'
    (re.compile(
        r"(?P<head>\b[\w-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key"
        r"|authorization)[\w-]*['\"]?\s*[:=]\s*(?:b?['\"])?)(?P<value>[^\s'\",;)}\]&]+)",
        re.IGNORECASE,
    ), rf"\g<head>{MASK}"),
]  # fmt: skip


#: What every shape above contains: a line without any of these needs no closer look (the
#: common case: ids, timestamps, step names), so redaction costs one search per string.
_TRIGGER = re.compile(r"://|bearer|basic|token|digest|pass|pwd|secret|key|auth", re.IGNORECASE)


@lru_cache(maxsize=4096)
def _secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name)) and not _HARMLESS_NAME.match(name)


def url_password(url: str | None) -> str | None:
    """The password in a URL's userinfo, if it has one."""
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


class Redactor:
    """The processor. `secrets`: exact values to mask (short ones are ignored: masking
    every `a` in a line would hide the line, not a secret)."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        known = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self.exact = re.compile("|".join(re.escape(s) for s in known)) if known else None

    def text(self, value: str) -> str:
        if self.exact is not None and self.exact.search(value):
            value = self.exact.sub(MASK, value)
        if not _TRIGGER.search(value):
            return value
        for pattern, replacement in _PATTERNS:
            value = pattern.sub(replacement, value)
        return value

    def value(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if depth > 12:
            return value
        if isinstance(value, dict):
            return {k: self.field(k, v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.value(v, depth + 1) for v in value)
        if isinstance(value, (bytes, bytearray)):
            return self.text(bytes(value).decode("utf-8", "replace"))
        if value is None or isinstance(value, (bool, int, float)):
            return value
        return self.text(repr(value))  # rendered by repr anyway: check what will be written

    def field(self, name: Any, value: Any, depth: int = 0) -> Any:
        if (
            isinstance(value, (str, bytes))
            and value not in ("", b"")
            and isinstance(name, str)
            and _secret_name(name)
        ):
            return MASK
        return self.value(value, depth)

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        for key, value in list(event.items()):
            if key.startswith("_") or key in _OURS or value is None:
                continue  # structlog's bookkeeping, and fields reelflow itself fills
            if isinstance(value, (int, float)):
                continue
            event[key] = self.field(key, value)
        return event


#: Fields whose values reelflow writes itself (ids, levels, times): nothing to mask there.
_OURS = frozenset({"timestamp", "level", "logger", "run_id", "task_id", "step_key",
                   "request_id", "generation", "attempt", "duration_ms", "status"})  # fmt: skip
