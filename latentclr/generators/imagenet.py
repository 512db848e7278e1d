"""ImageNet class names -> indices for BigGAN's ``class_name`` (the original uses NLTK's WordNet).

``imagenet_synsets.txt`` lists the 1000 ILSVRC-2012 synsets in class-index order with their WordNet
lemma names (``n01560419 bulbul`` is class 16). A name is looked up as the original does when NLTK and its
WordNet data are installed (first noun synset of the name that is an ImageNet class, else one of its
hypernyms / hyponyms). Without WordNet the shipped table decides: the synsets listing the name as a
lemma, preferring those where it is the first (head) name; a name that still matches several classes is
an error listing them, since only WordNet's sense order could choose.
"""

from __future__ import annotations

import functools
from pathlib import Path

from common.errors import UsageError

TABLE = Path(__file__).with_name("imagenet_synsets.txt")


@functools.lru_cache(maxsize=1)
def synsets() -> list[tuple[int, list[str]]]:
    """[(WordNet offset, [lemma names])] in class-index order."""
    rows = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        wnid, _, names = line.partition(" ")
        rows.append((int(wnid[1:]), [n.strip() for n in names.split(",") if n.strip()]))
    return rows


def _normal(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())


def class_index(class_name, num_classes: int = 1000) -> int:
    """Index of ``class_name`` (an int is taken as the index itself)."""
    if isinstance(class_name, bool):
        raise UsageError(f"generator.class_name must be an ImageNet class name or index, got {class_name!r}")
    if isinstance(class_name, int):
        if not 0 <= class_name < num_classes:
            raise UsageError(f"generator.class_name={class_name}: the index must be in [0, {num_classes})")
        return class_name
    name = str(class_name)
    if name.isdigit():
        return class_index(int(name), num_classes)
    index = _wordnet_index(name)
    if index is None:
        index = _table_index(name)
    if index >= num_classes:
        raise UsageError(f"generator.class_name={name!r} is ImageNet class {index}, beyond this model's "
                         f"{num_classes} classes")
    return index


def _table_index(name: str) -> int:
    wanted = _normal(name)
    rows = synsets()
    matches = [i for i, (_, names) in enumerate(rows) if wanted in (_normal(n) for n in names)]
    heads = [i for i in matches if _normal(rows[i][1][0]) == wanted]
    chosen = heads or matches
    if len(chosen) == 1:
        return chosen[0]
    if not chosen:
        raise UsageError(f"generator.class_name={name!r} is not an ImageNet class name; give the class index "
                         "(0-999) or install nltk with its wordnet data for the original's fuzzy lookup")
    listing = ", ".join(f"{i} ({rows[i][1][0]})" for i in chosen)
    raise UsageError(f"generator.class_name={name!r} names several ImageNet classes: {listing}; give the index")


def _wordnet_index(name: str) -> int | None:
    """The original's ``one_hot_from_names`` rule, when NLTK's WordNet is available; else None."""
    try:
        from nltk.corpus import wordnet as wn

        found = wn.synsets(name.replace(" ", "_"))
    except (ImportError, LookupError):
        return None
    offsets = {offset: i for i, (offset, _) in enumerate(synsets())}
    nouns = [s for s in found if s.pos() == "n"]
    direct = [s for s in nouns if s.offset() in offsets]
    if direct:
        return offsets[direct[0].offset()]
    related = [s for syn in nouns for s in syn.hypernyms() + syn.hyponyms() if s.offset() in offsets]
    if related:
        return offsets[related[0].offset()]
    raise UsageError(f"generator.class_name={name!r}: WordNet finds no ImageNet class for it")
