"""What the offline script writer knows about a topic: WordNet 3.0's nouns (definitions,
examples, what a thing is a kind of, its kinds and parts, what it belongs to), shipped as
data/knowledge.sqlite.gz (built by scripts/build_knowledge.py; WordNet's licence beside it).

The file is unpacked once into a cache folder and read by lemma, never loaded whole. A topic
is found as written, joined ("honey bee" -> honeybee), or, for a lower-case phrase, by its
head noun ("ocean pollution" -> pollution, said as such). A capitalised name WordNet does not
have as a whole ("Ada Lovelace") is not guessed from its parts: None, and the writer says
honestly that it has no notes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import sqlite3
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from reelflow.settings import get_settings

_DATA = "knowledge.sqlite.gz"
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Sense:
    words: list[str]
    definition: str
    examples: list[str]
    category: str | None
    kind_of: list[str] = field(default_factory=list)
    kind_of_definition: str = ""
    kinds: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    part_of: list[str] = field(default_factory=list)
    member_of: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    """A topic as found: the lemma that matched, whether only its head noun did, and its
    senses, most common first."""

    topic: str
    lemma: str
    head_only: bool
    senses: list[Sense]


@lru_cache(maxsize=1)
def data_version() -> str:
    """The bundled knowledge's digest: part of a script's input key."""
    packed = resources.files("steps.short_video.data").joinpath(_DATA).read_bytes()
    return hashlib.sha256(packed).hexdigest()[:16]


def _database() -> Path:
    packed = resources.files("steps.short_video.data").joinpath(_DATA).read_bytes()
    digest = data_version()
    folder = get_settings().reelflow_home / "cache"
    path = folder / f"knowledge-{digest}.sqlite"
    with _LOCK:
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(gzip.decompress(packed))
            tmp.replace(path)  # atomic: a concurrent reader sees the whole file or none
    return path


@lru_cache(maxsize=1)
def _connection(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


def _split_gloss(gloss: str) -> tuple[str, list[str]]:
    """WordNet's gloss: a definition, then quoted examples after semicolons."""
    examples = re.findall(r'"([^"]+)"', gloss)
    definition = re.sub(r';?\s*"[^"]*"', "", gloss).strip(" ;")
    return definition, examples


class Knowledge:
    def __init__(self, path: Path | None = None) -> None:
        self.db = _connection(path or _database())

    def _offsets(self, lemma: str) -> list[str]:
        row = self.db.execute("SELECT senses FROM lemma WHERE name = ?", (lemma,)).fetchone()
        return row[0].split(",") if row else []

    def _raw(self, offset: str) -> dict[str, object] | None:
        row = self.db.execute("SELECT data FROM sense WHERE id = ?", (offset,)).fetchone()
        return json.loads(row[0]) if row else None

    def _name(self, offset: str) -> str:
        raw = self._raw(offset)
        if raw is not None:
            return str(raw["w"][0])  # type: ignore[index]
        row = self.db.execute("SELECT word FROM name WHERE id = ?", (offset,)).fetchone()
        return str(row[0]) if row else ""

    def _sense(self, offset: str) -> Sense | None:
        raw = self._raw(offset)
        if raw is None:
            return None
        definition, examples = _split_gloss(str(raw["g"]))
        names = {k: [self._name(o) for o in raw.get(k, [])] for k in "hkpom"}  # type: ignore[attr-defined]
        hyper = self._raw(raw["h"][0]) if raw.get("h") else None  # type: ignore[index]
        return Sense(
            words=list(raw["w"]),  # type: ignore[call-overload]
            definition=definition,
            examples=examples,
            category=raw.get("c"),  # type: ignore[arg-type]
            kind_of=names["h"],
            kind_of_definition=_split_gloss(str(hyper["g"]))[0] if hyper else "",
            kinds=names["k"],
            parts=names["p"],
            part_of=names["o"],
            member_of=names["m"],
        )

    def lookup(self, topic: str) -> Entry | None:
        words = re.findall(r"[\w'-]+", topic.lower())
        if not words:
            return None
        candidates = [(" ".join(words), False), ("".join(words), False), ("-".join(words), False)]
        if len(words) > 1 and topic == topic.lower():  # a phrase, not a name: its head noun
            candidates.append((words[-1], True))
        for lemma, head_only in candidates:
            senses = [s for o in self._offsets(lemma) if (s := self._sense(o)) is not None]
            if head_only:
                if any(self._only_a_name(w) for w in words[:-1]):
                    return None  # "taylor swift": a name written small, not a kind of swift
                senses = [s for s in senses if not _proper(s)]  # a kind of thing, no one
            if senses:
                return Entry(topic=topic, lemma=lemma, head_only=head_only, senses=senses)
        return None

    def _only_a_name(self, word: str) -> bool:
        """WordNet knows the word, and only as a name (Taylor, Ada): never as a thing."""
        senses = [s for o in self._offsets(word) if (s := self._sense(o)) is not None]
        return bool(senses) and all(_proper(s) for s in senses)


def _proper(sense: Sense) -> bool:
    """A sense of a name (a person, a place): WordNet writes its words capitalised."""
    return all(w[:1].isupper() for w in sense.words)
