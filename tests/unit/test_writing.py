"""The offline writer's knowledge and honesty, topics the API refuses, long topics and
wordy writers that still fit the video, the caption's safe area, and the loudness of the
mix: pure parts of the video, no services."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from pydantic import ValidationError

from steps.short_video import voice as sound
from steps.short_video.captions import SAFE_LINES, SAFE_W, caption_pages, layout_caption
from steps.short_video.knowledge import Knowledge
from steps.short_video.models import ScriptParams, ShortVideoParams
from steps.short_video.script import build_script
from steps.short_video.speech import RATE
from steps.short_video.trends import topic_trend
from steps.short_video.writers import Draft, OfflineWriter


def test_the_knowledge_finds_topics_as_written_joined_or_by_head_noun() -> None:
    knowledge = Knowledge()
    volcano = knowledge.lookup("volcano")
    assert volcano and "lava" in volcano.senses[0].definition
    bee = knowledge.lookup("honey bee")  # honeybee, one word in WordNet
    assert bee and bee.lemma == "honeybee" and not bee.head_only
    assert "honey" in bee.senses[0].definition and bee.senses[0].kind_of == ["bee"]
    phrase = knowledge.lookup("ocean pollution")
    assert phrase and phrase.head_only and phrase.lemma == "pollution"
    # A capitalised name WordNet lacks as a whole is not guessed from its parts
    # (WordNet's Lovelace is a 17th-century poet, its ADA an enzyme).
    assert knowledge.lookup("Ada Lovelace") is None
    assert knowledge.lookup("Ünïcödé tést") is None


def test_the_writer_grounds_known_topics_and_says_when_it_knows_nothing() -> None:
    known = OfflineWriter().draft(topic_trend("honey bee"), 30)
    text = " ".join(known.lines)
    assert "A honey bee is a social bee often domesticated for the honey it produces." in text
    assert "no entry" not in text
    unknown = OfflineWriter().draft(topic_trend("Ada Lovelace"), 30)
    assert unknown.lines[0].startswith("Our offline notes have no entry for Ada Lovelace")
    assert all("Ada Lovelace" in line for line in unknown.lines[:6])  # about it, no facts


@pytest.mark.parametrize("topic", ["!!!", "   ", "火山", "volcano \x00"])
def test_a_topic_that_cannot_be_served_is_refused(topic: str) -> None:
    with pytest.raises(ValidationError):
        ShortVideoParams(topic=topic)


def test_a_topic_the_font_draws_is_accepted_and_tidied() -> None:
    assert ShortVideoParams(topic="  Ünïcödé   tést ").topic == "Ünïcödé tést"


@pytest.mark.parametrize("width", [144, 180, 720])
def test_captions_stay_in_the_safe_area(width: int) -> None:
    height = width * 16 // 9
    text = "Pneumonoultramicroscopicsilicovolcanoconiosis is a very long word, isn't it, Ünïcödé"
    font, lines = layout_caption(text, width, height)
    assert len(lines) <= SAFE_LINES
    assert max(font.getlength(line) for line in lines) <= width * SAFE_W


@pytest.mark.parametrize("width", [144, 180, 240, 720, 1080])
def test_every_word_of_a_long_phrase_is_shown_and_lit_in_its_own_box(width: int) -> None:
    """A phrase too long for the safe area is paged, never cut; a word the wrap splits (at
    a hyphen, or too long for a line) still has one box, so later words are lit in theirs."""
    text = (
        "A honey bee is a well-known extraordinarily-hardworking social insect pollinating"
        " everything everywhere, Pneumonoultramicroscopicsilicovolcanoconiosis included"
    )
    words = text.split(" ")
    pages = caption_pages(text, 1.0, [1.0 + 0.2 * i for i in range(len(words))], width,
                          width * 16 // 9)  # fmt: skip
    assert sum(len(page.boxes) for page in pages) == len(words)
    assert [p.start_s for p in pages] == sorted(p.start_s for p in pages)
    for page in pages:
        assert len(page.boxes) == len(page.word_starts)
        xs = [box[0] for box in page.boxes]
        ys = [box[2] for box in page.boxes]
        # reading order: left to right within a line, lines top to bottom
        assert all(
            (y1, x1) < (y2, x2)
            for (x1, y1), (x2, y2) in itertools.pairwise(zip(xs, ys, strict=True))
        )


def test_the_mix_is_normalised_to_minus_14_lufs_under_the_true_peak_ceiling() -> None:
    t = np.arange(20 * RATE) / RATE
    voice = (0.9 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)).astype(
        np.float32
    )
    mixed, lufs, peak = sound.normalised(sound.mix(voice, sound.music_bed(len(t), seed=3)))
    assert abs(lufs - sound.TARGET_LUFS) < 0.3, lufs
    assert peak <= sound.TARGET_PEAK_DBTP + 0.05, peak
    assert abs(sound.loudness_lufs(mixed) - lufs) < 1e-6
    ducked = sound.activity(voice)
    assert ducked[int(1.0 * RATE)] > 0.9 and ducked[int(3.95 * RATE)] < 0.2  # speaking, then silent


def test_a_name_written_small_is_not_guessed_from_its_last_word() -> None:
    knowledge = Knowledge()
    # WordNet's Swift is a meat-packer and its Lovelace a poet: neither is the topic
    assert knowledge.lookup("taylor swift") is None
    assert knowledge.lookup("ada lovelace") is None
    phrase = knowledge.lookup("ocean pollution")  # a phrase still reads as its head noun
    assert phrase and phrase.head_only and phrase.lemma == "pollution"


LONG = (
    "the remarkable and surprisingly complicated history of volcanic eruptions across the"
    " pacific ring of fire and beyond in modern times, told with far too many words in it"
)


@pytest.mark.parametrize("length", [60, 97, 137, 182])
def test_a_long_topic_fits_the_shortest_video_and_its_outro_is_heard(length: int) -> None:
    topic = LONG[:length].strip()
    params = ScriptParams(length_seconds=15, fps=10, topic=topic)
    script = build_script(OfflineWriter().draft(topic_trend(topic), 15), "t", [], params)
    assert script.title == topic  # said shorter, titled whole
    assert all(scene.duration_s >= 1.0 for scene in script.scenes), script.scenes
    assert round(sum(scene.duration_s for scene in script.scenes), 6) == 15
    last = script.scenes[-1]
    assert max(p.start_s + p.duration_s for p in last.phrases) <= last.duration_s


def test_a_writer_that_overruns_gives_scenes_of_positive_length_adding_up() -> None:
    wordy = " ".join(["an extraordinarily long sentence that keeps on going"] * 12) + "."
    draft = Draft(writer="w", title="t", hook=wordy, lines=[wordy], outro=wordy)
    script = build_script(draft, "t", [], ScriptParams(length_seconds=15, fps=10, topic="t"))
    frames = [round(scene.duration_s * 10) for scene in script.scenes]
    assert all(f >= 1 for f in frames) and sum(frames) == 150, frames
