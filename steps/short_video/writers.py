"""Script writers: what the narration says, line by line, before it is timed.

`OfflineWriter` (the default) grounds every line in the chosen trend and in the bundled
knowledge (steps.short_video.knowledge): what the topic is, what it is a kind of, its kinds
and parts, what else the word means. It writes more lines than a video needs, best first;
the script step keeps as many as fill the length. Where it knows nothing about a topic it
says so, and offers a way to explore it instead of inventing facts. `OpenAIWriter` asks an
OpenAI-compatible endpoint, and falls back to the offline writer on any failure.
"""

from __future__ import annotations

import json
import re
from typing import Protocol

import structlog
from pydantic import BaseModel, Field, ValidationError

from reelflow.settings import get_settings
from steps.short_video.knowledge import Entry, Knowledge, Sense, data_version
from steps.short_video.models import Trend
from steps.short_video.speech import engine_version

log = structlog.get_logger("reelflow.writers")

#: Categories of things a viewer can picture: preferred over a word's abstract senses.
_CONCRETE = {"animal", "artifact", "body", "food", "location", "object", "person", "plant",
             "substance", "phenomenon", "event", "act", "group"}  # fmt: skip


class Draft(BaseModel):
    """A writer's answer: a hook, then lines in the order they should be said (the script
    keeps a prefix of them), and an outro."""

    writer: str
    title: str
    hook: str
    lines: list[str] = Field(min_length=1)
    outro: str


class ScriptWriter(Protocol):
    name: str

    def draft(self, trend: Trend, length_seconds: int) -> Draft: ...


def _sentence(text: str) -> str:
    text = re.sub(r"\s*\((?![^)]*\d)[^)]*\)", "", text)  # asides read badly; dates stay
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def _listed(items: list[str]) -> str:
    items = [i for i in dict.fromkeys(items) if i]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _is_phrase(definition: str) -> bool:
    """A definition that already reads as a noun phrase with its own determiner."""
    return bool(re.match(r"(a|an|the|any|one|some)\b", definition, re.I))


def _facts(topic: str, sense: Sense, *, person: bool) -> list[str]:
    name = topic if person else f"{_article(topic)} {topic}"
    verb = "was" if person else "is"
    definition = sense.definition
    what = (
        definition if _is_phrase(definition) or person else f"{_article(definition)} {definition}"
    )
    out = [_sentence(f"{name} {verb} {what}")]
    if sense.kind_of and not person:
        kind = sense.kind_of[0]
        line = f"It is a kind of {kind}"
        if sense.kind_of_definition:
            line += f", and {_article(kind)} {kind} is {sense.kind_of_definition}"
        out.append(_sentence(line))
    out += [_sentence(f"For example: {e}") for e in sense.examples[:2]]
    if sense.kinds:
        out.append(_sentence(f"There are several kinds, such as {_listed(sense.kinds[:4])}"))
    if sense.parts:
        out.append(_sentence(f"Its parts include {_listed(sense.parts[:4])}"))
    if sense.part_of:
        out.append(_sentence(f"It is part of {_listed(sense.part_of[:3])}"))
    if sense.member_of:
        out.append(_sentence(f"It belongs to the group {_listed(sense.member_of[:2])}"))
    others = [w for w in sense.words if w.lower() != topic.lower()]
    if others:
        out.append(_sentence(f"It is also known as {_listed(others[:3])}"))
    return out


def known_lines(entry: Entry) -> list[str]:
    """Lines grounded in what the knowledge says of the topic, most telling first."""
    senses = sorted(entry.senses, key=lambda s: s.category not in _CONCRETE)  # stable
    first = senses[0]
    person = first.category == "person"
    topic = entry.topic if not entry.head_only else entry.lemma
    lines = []
    if entry.head_only:
        lines.append(_sentence(f"To understand {entry.topic}, start with what {_article(topic)} "
                               f"{topic} is"))  # fmt: skip
    lines += _facts(topic, first, person=person)
    for other in senses[1:]:
        lines.append(_sentence(f"The word {entry.lemma} can also mean {other.definition}"))
    return lines


def exploring_lines(topic: str, *, known: bool = False) -> list[str]:
    """Honest lines for a topic the bundled knowledge does not cover (or, `known`, more
    to say once its facts are told): how to find out, never a made-up fact."""
    first = (
        f"Want to go further with {topic}? Here is how to explore it."
        if known
        else f"Our offline notes have no entry for {topic} yet, so here is how to explore it."
    )
    return [
        first,
        f"Start with the basics: what is {topic}, and where does the name come from?",
        f"Next, ask who {topic} matters to, and why people are talking about it now.",
        f"Find one surprising fact about {topic}, and check it against two sources.",
        f"Then look for a picture, a map or a timeline that shows {topic} at a glance.",
        f"Then explain {topic} to a friend in one sentence. If you can, you know it.",
        f"Look for the people who know {topic} best, and read what they wrote first.",
        f"Ask what changed about {topic} in the last ten years, and what might change next.",
        f"Compare {topic} with something you already know well: what is alike, what is not?",
        f"Write down the one question about {topic} you still cannot answer.",
        f"Come back to {topic} in a week, and see what you remember.",
    ]


#: How long a topic may be to be said as it is: a longer one is said by its first words
#: (the title keeps it whole), so the hook and the outro fit the shortest video.
SPOKEN_NAME_MAX = 48


def spoken_name(topic: str) -> str:
    """The topic as the narration says it: whole when short, else its first clause, or
    its first words, within SPOKEN_NAME_MAX characters."""
    if len(topic) <= SPOKEN_NAME_MAX:
        return topic
    clause = re.split(r"\s*[:;,(\[]\s*|\s+[-\u2013\u2014]\s+", topic, maxsplit=1)[0].strip()
    if len(clause.split()) > 1 and len(clause) <= SPOKEN_NAME_MAX:
        return clause
    name = ""
    for word in topic.split():
        if name and len(name) + 1 + len(word) > SPOKEN_NAME_MAX:
            break
        name = f"{name} {word}".strip()
    return name[:SPOKEN_NAME_MAX]


class OfflineWriter:
    name = "offline-v3"

    def __init__(self, knowledge: Knowledge | None = None) -> None:
        self._knowledge = knowledge

    @property
    def knowledge(self) -> Knowledge:
        if self._knowledge is None:
            self._knowledge = Knowledge()
        return self._knowledge

    def draft(self, trend: Trend, length_seconds: int) -> Draft:
        title = trend.title
        topic = spoken_name(title)
        lines = [_sentence(p) for p in ([trend.summary] if trend.summary else []) + trend.points]
        entry = self.knowledge.lookup(title) if not lines else None
        lines += known_lines(entry) if entry else []
        lines += exploring_lines(topic, known=bool(lines))
        lines += [  # short ones last: they fill what the long ones leave
            _sentence(f"Keep an eye on {topic}: there is always more to learn"),
            _sentence(f"Tell us in the comments what you would like to know about {topic}"),
            _sentence(f"There is more to {topic} than fits in a short video"),
            _sentence("Save this for later"),
        ]
        return Draft(
            writer=self.name,
            title=title,
            hook=_sentence(f"{topic} in {length_seconds} seconds. Here is what you need to know"),
            lines=lines,
            outro=_sentence(f"That's {topic} in {length_seconds} seconds. Follow for more!"),
        )


class OpenAIWriter:
    """A script from an OpenAI-compatible endpoint (OPENAI_BASE_URL, OPENAI_API_KEY,
    OPENAI_MODEL), through the maintained `openai` client with its timeout and retries; on
    any failure or malformed answer, the offline writer's script."""

    name = "openai"

    def __init__(self, fallback: OfflineWriter) -> None:
        self.fallback = fallback

    def draft(self, trend: Trend, length_seconds: int) -> Draft:
        from openai import OpenAI, OpenAIError

        settings = get_settings()
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "none"
        client = OpenAI(base_url=settings.openai_base_url, api_key=key, max_retries=2,
                        timeout=settings.openai_timeout_seconds)  # fmt: skip
        words = round(length_seconds * 2.6)
        prompt = (
            f"Write the narration of a {length_seconds}-second vertical video about "
            f"{trend.title!r} ({trend.summary}). Answer with JSON only: "
            '{"hook": "...", "lines": ["...", ...], "outro": "..."}, about '
            f"{words} words in all, short spoken sentences, facts only."
        )
        try:
            answer = client.chat.completions.create(
                model=settings.openai_model,
                messages=[{"role": "user", "content": prompt}],
                temperature=0,
            )
            text = answer.choices[0].message.content or ""
            found = json.loads(text[text.index("{") : text.rindex("}") + 1])
            return Draft(writer=f"openai:{settings.openai_model}", title=trend.title, **found)
        except (OpenAIError, ValueError, KeyError, TypeError, ValidationError) as exc:
            log.warning("script_writer_fell_back", writer=self.name, error=repr(exc))
            return self.fallback.draft(trend, length_seconds)


def writer() -> ScriptWriter:
    """The writer SCRIPT_PROVIDER names."""
    offline = OfflineWriter()
    return OpenAIWriter(offline) if get_settings().script_provider == "openai" else offline


def writer_version() -> str | None:
    """What a script depends on besides its code and inputs: the offline writer's knowledge
    (by digest), and the speech that times its lines. A language model's answer is not
    repeatable: its script is never reused."""
    if get_settings().script_provider == "openai":
        return None
    return f"{OfflineWriter.name}:{data_version()}:{engine_version()}"
