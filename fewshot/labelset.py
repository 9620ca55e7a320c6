"""The declared labels: labels before examples (``fewshot label-add``, ``labels``...).

A label is declared with a name and, optionally, a description; its prior (the name, or
``name: description``) then answers for it in the retrieval stage until, and beside, its
examples (:mod:`fewshot.stages.priors`). A label also exists through its examples alone;
:meth:`LabelSet.labels` lists both kinds. :class:`LabelSet` gives :class:`~fewshot.workspace.
Workspace` its label methods (it is mixed into it), so the workspace stays a thin facade.

Removing a declared label that examples still carry is refused unless ``keep_examples``:
then only the declaration (the description and the prior) goes, and the examples keep their
label. Examples are removed with ``Workspace.remove``, never by removing a label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fewshot.corpus import Corpus
from fewshot.dataio import clean_text, read_declared
from fewshot.errors import ConflictError, DataError
from fewshot.storage.labels import LabelTable
from fewshot.storage.store import Store

Declaration = tuple[str, str | None]
"""A label to declare: ``(name, description or None)``."""


@dataclass(frozen=True)
class LabelInfo:
    """A label of the workspace: declared, or known from its examples only."""

    name: str
    description: str | None
    examples: int
    declared: bool

    def to_dict(self) -> dict[str, Any]:
        """Return the row of ``fewshot labels --format json``."""
        return {
            "name": self.name,
            "description": self.description,
            "examples": self.examples,
            "declared": self.declared,
        }


def declaration(name: object, description: object, where: str) -> Declaration:
    """Return a cleaned ``(name, description)``; an empty description reads as none.

    Raises:
        DataError: If the name is empty, not a string, or not valid Unicode (or the
            description is not a string).
    """
    clean = clean_text(name, "label", where)
    if description is None or (isinstance(description, str) and not description.strip()):
        return clean, None
    if not isinstance(description, str):
        raise DataError(
            f"{where}: expected a string description, found {type(description).__name__}."
        )
    return clean, clean_text(description, "description", where)


def file_labels(path: Path, label_field: str = "label") -> list[Declaration]:
    """Return the label rows (``{"kind": "label", ...}``) of a file ``export`` wrote."""
    return [(name, description) for name, description, _ in read_declared(path, label_field)]


class LabelSet:
    """The label methods of the workspace (mixed into :class:`~fewshot.workspace.Workspace`)."""

    store: Store
    corpus: Corpus

    def labels(self) -> list[LabelInfo]:
        """Return every label, declared or carried by examples, by name."""
        counts = self.corpus.label_counts()
        declared = {d.name: d.description for d in self.corpus.declared()}
        return [
            LabelInfo(name, declared.get(name), counts.get(name, 0), name in declared)
            for name in sorted({*counts, *declared})
        ]

    def add_label(self, name: str, description: str | None = None) -> LabelInfo:
        """Declare a label (it may have examples already, not a declaration).

        Raises:
            DataError: If the name is blank (or either is not text).
            ConflictError: If the label is declared already (change it with
                :meth:`edit_label`).
        """
        clean = declaration(name, description, "label-add")
        if clean[0] in self._declared():
            raise ConflictError(
                f"label '{clean[0]}' is declared already; change its description with "
                f"`fewshot label-edit {clean[0]} --description TEXT`. Nothing was changed."
            )
        LabelTable(self.store).put([clean])
        return self._info(clean[0])

    def edit_label(self, name: str, description: str | None) -> LabelInfo:
        """Set the description of a label (declaring it if only its examples knew it).

        A blank or None ``description`` leaves the name alone as the prior.

        Raises:
            DataError: If no label of that name exists (declared or with examples).
        """
        clean = declaration(name, description, "label-edit")
        self._known(clean[0], "label-edit")
        LabelTable(self.store).put([clean])
        return self._info(clean[0])

    def remove_label(self, name: str, keep_examples: bool = False) -> LabelInfo:
        """Forget a declared label: its description and its prior. Returns it as it was.

        Raises:
            DataError: If the label is not declared.
            ConflictError: If examples carry it and ``keep_examples`` is not given.
        """
        info = self._known(clean_text(name, "label", "label-remove"), "label-remove")
        if not info.declared:
            raise DataError(
                f"label-remove: label '{info.name}' is not declared (only its {info.examples} "
                "examples carry it); remove those with `Workspace.remove`. Nothing was changed."
            )
        if info.examples and not keep_examples:
            raise ConflictError(
                f"label-remove: {info.examples} examples still carry label '{info.name}'; "
                "relabel or remove them first, or pass --keep-examples to forget only its "
                "declaration (description and prior). Nothing was changed."
            )
        LabelTable(self.store).delete(info.name)
        return info

    def declare_labels(self, labels: Sequence[Declaration]) -> int:
        """Declare labels or set their descriptions, in one transaction (``import``).

        Returns how many were new or changed.
        """
        declared = self._declared()
        changes = [(n, d) for n, d in dict(labels).items() if n not in declared or declared[n] != d]
        if changes:
            LabelTable(self.store).put(changes)
        return len(changes)

    def label_rows(self) -> list[dict[str, Any]]:
        """Return the declared labels as ``export`` rows ``{kind: "label", label, description}``."""
        return [
            {"kind": "label", "label": d.name, "description": d.description}
            for d in self.corpus.declared()
        ]

    def _declared(self) -> dict[str, str | None]:
        return {d.name: d.description for d in self.corpus.declared()}

    def _info(self, name: str) -> LabelInfo:
        return next(info for info in self.labels() if info.name == name)

    def _known(self, name: str, command: str) -> LabelInfo:
        found = [info for info in self.labels() if info.name == name]
        if not found:
            names = ", ".join(f"'{info.name}'" for info in self.labels()) or "none yet"
            raise DataError(
                f"{command}: no label '{name}' in the workspace (labels: {names}); declare it "
                "with `fewshot label-add NAME`. Nothing was changed."
            )
        return found[0]


__all__ = ["Declaration", "LabelInfo", "LabelSet", "declaration", "file_labels"]
