"""The rules for setting an image: which keys of an ``images:`` entry to write or remove, and where.

Pure decisions over the entry (``ImageEdit``) are kept apart from the ruamel edits that carry them
out (``set_key``, ``remove_key``), so the rules can be tested on plain mappings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ruamel.yaml.comments import CommentedMap

from stageflow.adapters.kustomization.comments import (
    add_trailing,
    add_trailing_at,
    take_trailing,
    take_trailing_of,
)
from stageflow.adapters.kustomization.roundtrip import styled_scalar
from stageflow.domain.images import ImageRef

# kustomize's own order for the fields of an images[] entry (`kustomize edit set image` writes it).
IMAGE_KEYS = ("name", "newName", "newTag", "digest")


@dataclass(frozen=True)
class ImageEdit:
    """What setting one image writes: the values ``ref`` gives, and the keys it clears.

    Only what ``ref`` gives is written: setting a digest keeps the tag and vice versa, unless
    ``clear_other`` asks to remove the one ``ref`` leaves out. ``newName`` is written when given
    and left alone otherwise.
    """

    name: str
    wanted: Mapping[str, str]  # in kustomize's key order
    unwanted: tuple[str, ...] = ()

    @classmethod
    def of(cls, ref: ImageRef, *, clear_other: bool = False) -> ImageEdit:
        """Return the edit that sets ``ref`` (its name, and whichever of the values it gives)."""
        given = (("newName", ref.new_name), ("newTag", ref.tag), ("digest", ref.digest))
        wanted = {key: value for key, value in given if value is not None}
        unwanted: tuple[str, ...] = ()
        if clear_other:
            unwanted = tuple(key for key in ("newTag", "digest") if key not in wanted)
        return cls(ref.name, wanted, unwanted)

    def to_set(self, entry: Mapping[str, object]) -> list[str]:
        """The keys of ``entry`` to write: those that do not already read as the wanted text."""
        return [
            key
            for key, value in self.wanted.items()
            if not (isinstance(entry.get(key), str) and entry[key] == value)
        ]

    def to_remove(self, entry: Mapping[str, object]) -> list[str]:
        """The keys of ``entry`` to remove."""
        return [key for key in self.unwanted if key in entry]

    def changes(self, entry: Mapping[str, object]) -> bool:
        """Say whether applying the edit to ``entry`` changes it."""
        return bool(self.to_set(entry) or self.to_remove(entry))

    def apply(self, entry: CommentedMap) -> None:
        """Write the edit into an existing entry, keeping its key order and comments."""
        for key in self.to_set(entry):
            set_key(entry, key, styled_scalar(self.wanted[key], entry.get(key)))
        for key in self.to_remove(entry):
            remove_key(entry, key)

    def new_entry(self) -> CommentedMap:
        """Return the entry for an image the file has no entry for yet."""
        entry = CommentedMap()
        entry["name"] = styled_scalar(self.name, None)
        for key in IMAGE_KEYS[1:]:
            if key in self.wanted:
                entry[key] = styled_scalar(self.wanted[key], None)
        return entry


def set_key(entry: CommentedMap, key: str, value: str) -> None:
    """Write ``entry[key]``: in place when present, else at its rank in kustomize's key order."""
    if key in entry:
        entry[key] = value  # same place; its end-of-line comment stays
        return
    rank = IMAGE_KEYS.index(key)
    for position, existing in enumerate(entry):
        if existing in IMAGE_KEYS and IMAGE_KEYS.index(existing) > rank:
            entry.insert(position, key, value)
            return
    trailing = take_trailing(entry)
    entry[key] = value
    add_trailing(entry, trailing)


def remove_key(entry: CommentedMap, key: str) -> None:
    """Remove ``entry[key]`` and its end-of-line comment, keeping the comment lines below it."""
    position = list(entry).index(key)
    # Comment lines below the removed line belong to what follows it; keep them.
    trailing = take_trailing_of(entry, key)
    entry.ca.items.pop(key, None)
    previous = list(entry)[position - 1] if position > 0 else None
    del entry[key]
    if previous is not None:
        add_trailing_at(entry, previous, trailing)
