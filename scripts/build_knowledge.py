"""Build steps/short_video/data/knowledge.sqlite.gz, the offline script writer's knowledge,
from WordNet 3.0's noun files (Debian: `apt-get install wordnet-base`).

    python scripts/build_knowledge.py [/usr/share/wordnet]

For every noun lemma: its two most common senses. For every sense: its words, its gloss
(definition and examples), what it is a kind of (or an instance of), a few of its kinds,
its parts, what it is part of, what it is a member of, and its lexicographer category.
A gzipped SQLite file: looked up by lemma without loading it (the writer unpacks it once
into a cache folder). Kept deterministic (sorted inserts, no timestamps).
WordNet's licence is kept beside the data (knowledge.LICENSE).
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "steps" / "short_video" / "data" / "knowledge.sqlite.gz"
# WordNet's lexicographer files, in their numbering (lexnames): nouns are 03-28.
CATEGORIES = {
    3: "top", 4: "act", 5: "animal", 6: "artifact", 7: "attribute", 8: "body",
    9: "cognition", 10: "communication", 11: "event", 12: "feeling", 13: "food",
    14: "group", 15: "location", 16: "motive", 17: "object", 18: "person",
    19: "phenomenon", 20: "plant", 21: "possession", 22: "process", 23: "quantity",
    24: "relation", 25: "shape", 26: "state", 27: "substance", 28: "time",
}  # fmt: skip
RELATIONS = {"@": "h", "@i": "h", "~": "k", "~i": "k", "%p": "p", "#p": "o", "#m": "m"}


def synsets(folder: Path) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for line in (folder / "data.noun").read_text("utf-8").splitlines():
        if line.startswith("  "):  # the licence header
            continue
        head, _, gloss = line.partition(" | ")
        fields = head.split()
        offset, lexnum, count = fields[0], int(fields[1]), int(fields[3], 16)
        words = [fields[4 + 2 * i].replace("_", " ") for i in range(count)]
        at = 4 + 2 * count
        entry: dict[str, object] = {"w": words, "g": gloss.strip(), "c": CATEGORIES.get(lexnum)}
        for i in range(int(fields[at])):
            symbol, target, pos = fields[at + 1 + 4 * i : at + 4 + 4 * i]
            key = RELATIONS.get(symbol)
            if key and pos == "n":
                entry.setdefault(key, []).append(target)  # type: ignore[union-attr]
        found[offset] = entry
    return found


def index(folder: Path) -> dict[str, list[str]]:
    lemmas: dict[str, list[str]] = {}
    for line in (folder / "index.noun").read_text("utf-8").splitlines():
        if line.startswith("  "):
            continue
        fields = line.split()
        count, pointers = int(fields[2]), int(fields[3])
        offsets = fields[4 + pointers + 2 : 4 + pointers + 2 + count]
        lemmas[fields[0].replace("_", " ")] = offsets[:2]  # the two most common senses
    return lemmas


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/wordnet")
    lemmas, all_synsets = index(folder), synsets(folder)
    keep: set[str] = {o for offsets in lemmas.values() for o in offsets}
    named = set(keep)
    for offset in keep:  # the synsets they point at are named by their first word only
        for key in ("h", "k", "p", "o", "m"):
            named.update(all_synsets[offset].get(key, []))  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "knowledge.sqlite"
        db = sqlite3.connect(path)
        db.executescript(
            "CREATE TABLE lemma (name TEXT PRIMARY KEY, senses TEXT NOT NULL) WITHOUT ROWID;"
            "CREATE TABLE sense (id TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;"
            "CREATE TABLE name (id TEXT PRIMARY KEY, word TEXT NOT NULL) WITHOUT ROWID;"
        )
        db.executemany(
            "INSERT INTO lemma VALUES (?, ?)",
            [(name, ",".join(offsets)) for name, offsets in sorted(lemmas.items())],
        )
        rows = []
        for offset in sorted(keep):
            entry = dict(all_synsets[offset])
            if "k" in entry:
                entry["k"] = entry["k"][:6]  # type: ignore[index]
            rows.append((offset, json.dumps(entry, sort_keys=True, ensure_ascii=False)))
        db.executemany("INSERT INTO sense VALUES (?, ?)", rows)
        db.executemany(
            "INSERT INTO name VALUES (?, ?)",
            [(o, all_synsets[o]["w"][0]) for o in sorted(named - keep)],  # type: ignore[index]
        )
        db.commit()
        db.execute("VACUUM")
        db.close()
        OUT.write_bytes(gzip.compress(path.read_bytes(), compresslevel=9, mtime=0))
    copyright_file = Path("/usr/share/doc/wordnet-base/copyright")
    if copyright_file.exists():
        (OUT.parent / "knowledge.LICENSE").write_text(copyright_file.read_text("utf-8"))
    print(f"{OUT}: {OUT.stat().st_size} bytes, {len(lemmas)} lemmas, {len(keep)} senses")


if __name__ == "__main__":
    main()
