"""collect_trends: read trends from the configured provider and choose one.

TRENDS_SOURCE picks the provider: `builtin` (the sample set in steps/short_video/data), a path
to a JSON or CSV file, or an http(s) URL of a published CSV. Add a provider by writing a
class with `name` and `load()` and teaching `provider_for` its source.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import structlog
from pydantic import BaseModel

from reelflow.errors import PermanentStepError, TransientStepError
from reelflow.settings import get_settings
from steps import RetryPolicy, step
from steps.short_video.models import Trend, TrendParams, TrendsOut

log = structlog.get_logger("reelflow.trends")


class TrendProvider(Protocol):
    name: str

    def load(self) -> list[Trend]: ...


def _from_rows(rows: list[dict[str, Any]]) -> list[Trend]:
    """CSV columns: id,title,score,hashtags (space or | separated),summary,points (|)."""
    trends = []
    for row in rows:

        def split(value: Any, sep: str) -> list[str]:
            if isinstance(value, list):
                return [str(v) for v in value]
            return [v.strip() for v in str(value or "").replace("|", sep).split(sep) if v.strip()]

        trends.append(
            Trend(
                id=str(row["id"]),
                title=str(row["title"]),
                score=float(row.get("score") or 0),
                hashtags=split(row.get("hashtags"), " "),
                summary=str(row.get("summary") or ""),
                points=split(row.get("points"), "|"),
            )
        )
    return trends


class BuiltinProvider:
    name = "builtin"

    def load(self) -> list[Trend]:
        text = resources.files("steps.short_video.data").joinpath("trends.json").read_text("utf-8")
        return _from_rows(json.loads(text))


class FileProvider:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"file:{path}"

    def load(self) -> list[Trend]:
        if not self.path.exists():
            raise PermanentStepError(f"trends file {self.path} does not exist")
        text = self.path.read_text("utf-8")
        if self.path.suffix.lower() == ".csv":
            return _from_rows(list(csv.DictReader(io.StringIO(text))))
        return _from_rows(json.loads(text))


class CsvUrlProvider:
    def __init__(self, url: str, timeout: float = 10) -> None:
        self.url, self.timeout = url, timeout
        self.name = f"url:{url}"

    def load(self) -> list[Trend]:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                text = response.read().decode("utf-8")
        except OSError as exc:  # network trouble is worth a retry
            raise TransientStepError(f"cannot fetch trends from {self.url}: {exc}") from exc
        return _from_rows(list(csv.DictReader(io.StringIO(text))))


def provider_for(source: str) -> TrendProvider:
    if source == "builtin":
        return BuiltinProvider()
    if source.startswith(("http://", "https://")):
        return CsvUrlProvider(source)
    return FileProvider(Path(source))


def choose(trends: list[Trend], params: TrendParams) -> Trend:
    """The trend asked for by id, else the one matching every word of the topic, else the
    topic as a trend of its own (any topic is served), else the highest-scored."""
    if params.topic and not trends:
        return topic_trend(params.topic)
    if not trends:
        raise PermanentStepError("the trend source is empty")
    if params.trend_id:
        for trend in trends:
            if trend.id == params.trend_id:
                return trend
        raise PermanentStepError(f"no trend with id {params.trend_id!r}")
    if params.topic:
        words = re.findall(r"\w+", params.topic.lower())

        def matches(trend: Trend) -> int:
            text = f"{trend.title} {trend.summary} {' '.join(trend.hashtags)}".lower()
            found = set(re.findall(r"\w+", text))
            return sum(w in found for w in words)

        scored = [(matches(t), t) for t in trends]
        best = max(scored, key=lambda pair: (pair[0], pair[1].score))
        if best[0] == len(words):  # every word of the topic: that trend is the topic
            return best[1]
        return topic_trend(params.topic)  # the topic itself: the writer grounds it
    return max(trends, key=lambda t: t.score)


def topic_trend(topic: str) -> Trend:
    """A trend made of a topic no feed has: its words as hashtags, nothing else claimed."""
    words = re.findall(r"\w+", topic)
    slug = "-".join(w.lower() for w in words)[:60]
    tags = [f"#{w.lower()}" for w in words[:3]]
    return Trend(id=f"topic:{slug}", title=topic.strip(), score=0.0, hashtags=tags)


def source_version() -> str | None:
    """What the trends read depend on besides the code: the bundled set's or the file's
    bytes (by digest). A live feed changes by itself: its result is never reused."""
    source = get_settings().trends_source
    if source.startswith(("http://", "https://")):
        return None
    if source == "builtin":
        data = resources.files("steps.short_video.data").joinpath("trends.json").read_bytes()
    else:
        path = Path(source)
        data = path.read_bytes() if path.exists() else b"missing"
    return hashlib.sha256(source.encode() + b"\0" + data).hexdigest()[:16]


#: What a source that cannot be read or parsed raises (a JSON file of the wrong shape:
#: TypeError or AttributeError).
_UNREADABLE = (TransientStepError, PermanentStepError, OSError, ValueError, KeyError, TypeError,
               AttributeError, csv.Error)  # fmt: skip


def local_trend_ids() -> set[str] | None:
    """The trend ids the configured source offers, when it is local (the bundled set or a
    file) and readable: what a `trend_id` is checked against when a run is started. None
    for a live feed (its ids change by themselves: checked when the step runs)."""
    provider = provider_for(get_settings().trends_source)
    if isinstance(provider, CsvUrlProvider):
        return None
    try:
        return {t.id for t in provider.load()}
    except _UNREADABLE:
        return None  # unreadable now: the step decides (it may be readable by then)


def unknown_trend(params: BaseModel) -> list[dict[str, str]]:
    """A run's params are checked with this when it starts: a `trend_id` the configured
    local source does not offer is refused then, not when the run reaches this step."""
    trend_id = getattr(params, "trend_id", None)
    known = local_trend_ids() if trend_id is not None else None
    if known is None or trend_id in known:
        return []
    some = ", ".join(sorted(known)[:5])
    return [{"field": "trend_id", "message": f"no trend has this id (offered: {some}, ...)"}]


@step(retry=RetryPolicy(max_attempts=3, backoff_base=2.0), key_extra=source_version)
def collect_trends(params: TrendParams) -> TrendsOut:
    """The configured source's trends; when it cannot be read, the bundled list (a run
    asking for a topic, or for nothing in particular, never fails for a feed that is
    down; one asking for a feed's trend id retries, as only that feed has it)."""
    provider = provider_for(get_settings().trends_source)
    try:
        loaded = provider.load()
    except _UNREADABLE as exc:
        if isinstance(provider, BuiltinProvider) or params.trend_id:
            raise
        log.warning("trends_source_unreadable", source=provider.name, error=str(exc)[:300])
        fallback = BuiltinProvider()
        provider, loaded = fallback, fallback.load()
        provider.name = f"builtin (fallback: {exc.__class__.__name__} reading the source)"
    trends = sorted(loaded, key=lambda t: -t.score)
    return TrendsOut(source=provider.name, trends=trends, chosen=choose(trends, params))
