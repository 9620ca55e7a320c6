"""The Workspace: a persistent classifier on disk (SQLite + a FAISS cache + models).

Everything a user can do from the CLI is one method here. See DESIGN.md for the format.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fewshot.dataio import check_one_label_per_text, clean_text, read_labeled
from fewshot.embed import DEFAULT_MODEL, Encoder
from fewshot.errors import ConfigError, DataError, WorkspaceError
from fewshot.index import VectorIndex
from fewshot.stages.retrieval import DEFAULT_K, Memory, RetrievalStage, Vote
from fewshot.store import DB_NAME, Store
from fewshot.values import Example, Prediction

if TYPE_CHECKING:
    from fewshot.backends.base import LLMSettings
    from fewshot.evaluate import EvalReport
    from fewshot.stages.llm import PromptPreview

DEFAULT_STORE = "index"
STORE_ENV = "FEWSHOT_STORE"
DEFAULT_MIN_PER_LABEL = 8


def resolve_store(path: str | os.PathLike[str] | None) -> Path:
    """Return the workspace directory: ``path``, else ``$FEWSHOT_STORE``, else ``./index``."""
    return Path(path or os.environ.get(STORE_ENV) or DEFAULT_STORE)


@dataclass(frozen=True)
class AddResult:
    """What an add or import changed."""

    added: int
    unchanged: int
    relabeled: int
    training: Any = None
    """The ``TrainReport`` when this add trained SetFit, "background" when it started a
    background training, else None."""


class Workspace:
    """A persistent few-shot classifier stored in one directory.

    Open one with :meth:`open` or :meth:`create`; use it as a context manager to close it.
    """

    def __init__(self, path: Path, store: Store) -> None:
        self.path = path
        self.store = store
        self._encoder: Encoder | None = None
        self._memory: tuple[int, Memory] | None = None

    # -- life cycle -----------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str] | None = None,
        model: str = DEFAULT_MODEL,
        min_per_label: int = DEFAULT_MIN_PER_LABEL,
    ) -> Workspace:
        """Create a workspace in ``path`` (made if missing; it may hold other files).

        Raises:
            WorkspaceError: If ``path`` is a file or already holds a workspace.
            ConfigError: If ``model`` cannot be loaded or ``min_per_label`` < 1.
        """
        directory = _directory(resolve_store(path))
        if (directory / DB_NAME).exists():
            raise WorkspaceError(f"{directory}: a workspace already exists here.")
        if min_per_label < 1:
            raise ConfigError(f"min_per_label must be at least 1, got {min_per_label}.")
        encoder = Encoder(model)
        if encoder.key != DEFAULT_MODEL:
            _ = encoder.dim  # load it now: a bad name fails before anything is written
        directory.mkdir(parents=True, exist_ok=True)
        store = Store.create(directory / DB_NAME)
        with store.transaction() as conn:
            store.set_setting("model", model if encoder.key == DEFAULT_MODEL else encoder.key, conn)
            store.set_setting("min_per_label", min_per_label, conn)
        return cls(directory, store)

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, create: bool = False) -> Workspace:
        """Open the workspace in ``path``; with ``create``, make a default one if missing."""
        directory = _directory(resolve_store(path))
        if not (directory / DB_NAME).exists():
            if create:
                return cls.create(directory)
            raise WorkspaceError(
                f"{directory}: no workspace here; create one with `fewshot init` "
                "(or `fewshot add`/`import`, which create one)."
            )
        return cls(directory, Store.open(directory / DB_NAME))

    def close(self) -> None:
        """Close the database connection."""
        self.store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- settings -------------------------------------------------------------------------

    @property
    def model(self) -> str:
        """The encoder's model name or path."""
        return str(self.store.get_setting("model", DEFAULT_MODEL))

    @property
    def min_per_label(self) -> int:
        """Examples per label at which SetFit training starts."""
        return int(self.store.get_setting("min_per_label", DEFAULT_MIN_PER_LABEL))

    @property
    def encoder(self) -> Encoder:
        """The base encoder (loaded on first use)."""
        if self._encoder is None:
            self._encoder = Encoder(self.model)
        return self._encoder

    # -- writing --------------------------------------------------------------------------

    def add(
        self,
        texts: Sequence[str],
        labels: str | Sequence[str],
        source: str = "add",
        relabel: bool = False,
        progress: bool = False,
        train: str | None = None,
    ) -> AddResult:
        """Add labeled examples: all of them, or none when any is invalid.

        A text already stored with the same label is left as it is (counted ``unchanged``).
        A text already stored with another label is an error unless ``relabel`` is set, in
        which case its label changes.

        Args:
            texts: The texts.
            labels: One label for all, or one per text.
            source: Recorded with each new example.
            relabel: Allow changing the label of a stored text.
            progress: Show a progress bar while embedding (and training).
            train: When SetFit training is due (:meth:`training_due`): "auto" trains now,
                "background" starts :meth:`start_background_training`, "never" does not;
                None uses the setting ``train`` (default "auto").
        """
        label_list = [labels] * len(texts) if isinstance(labels, str) else list(labels)
        if len(label_list) != len(texts):
            raise DataError(f"got {len(texts)} texts but {len(label_list)} labels.")
        rows = [
            (clean_text(t, "text", f"text {i}"), clean_text(lab, "label", f"text {i}"), f"text {i}")
            for i, (t, lab) in enumerate(zip(texts, label_list), start=1)
        ]
        return self._train_after(self._add_rows(rows, source, relabel, progress), train, progress)

    def import_file(
        self,
        path: str | os.PathLike[str],
        text_field: str = "text",
        label_field: str = "label",
        relabel: bool = False,
        progress: bool = False,
        train: str | None = None,
    ) -> AddResult:
        """Import a labeled CSV / TSV / JSONL file: all rows, or none (see :meth:`add`)."""
        file = Path(path)
        rows = [
            (text, label, f"{file}, line {line}")
            for text, label, line in read_labeled(file, text_field, label_field)
        ]
        added = self._add_rows(rows, f"import:{file.name}", relabel, progress)
        return self._train_after(added, train, progress)

    def _train_after(self, result: AddResult, train: str | None, progress: bool) -> AddResult:
        from fewshot.training import after_add

        return replace(result, training=after_add(self, train, progress))

    def training_due(self) -> str | None:
        """Why SetFit should train now (the reason), or None (see :mod:`fewshot.policy`)."""
        from fewshot import policy

        counts, models = self.store.label_counts(), self.store.models()
        return policy.training_due(counts, models, self.store.settings())

    def train(self, force: bool = False, progress: bool = False) -> Any:
        """Train SetFit now if due (or ``force``); return the ``TrainReport`` or None."""
        from fewshot import training

        return training.train_now(self, force=force, progress=progress)

    def start_background_training(self) -> Any:
        """Start ``fewshot train`` in a detached process (the ``Popen``), or None if one runs."""
        from fewshot import training

        return training.start_background(self)

    def rollback(self, version: int | None = None) -> int | None:
        """Serve model ``version``, or step back one version (to retrieval when none is left)."""
        from fewshot import models

        return models.rollback(self.store, version)

    def _add_rows(
        self, rows: Sequence[tuple[str, str, str]], source: str, relabel: bool, progress: bool
    ) -> AddResult:
        check_one_label_per_text(rows)
        stored = self.store.find_texts([text for text, _, _ in rows])
        seen: set[str] = set()
        new: list[tuple[str, str]] = []
        changes: dict[int, str] = {}
        unchanged = 0
        for text, label, where in rows:
            if text in seen:
                continue
            seen.add(text)
            old = stored.get(text)
            if old is None:
                new.append((text, label))
            elif old.label == label:
                unchanged += 1
            elif relabel:
                changes[old.id] = label
            else:
                raise DataError(
                    f"{where}: this text is already labeled '{old.label}' in the workspace, "
                    f"not '{label}'; pass --relabel to change its label. Nothing was added."
                )
        vectors = self.encoder.encode([text for text, _ in new], progress=progress) if new else None
        self.store.add_examples(
            new, source, self.encoder.key, vectors, relabel=list(changes.items())
        )
        return AddResult(added=len(new), unchanged=unchanged, relabeled=len(changes))

    def remove(self, texts: Sequence[str]) -> int:
        """Delete the examples with these texts (and their embeddings); return how many.

        Texts that are not stored are ignored. Used by ``fewshot label``'s undo.
        """
        found = self.store.find_texts(list(texts))
        for example in found.values():
            self.store.delete_example(example.id)
        return len(found)

    # -- reading --------------------------------------------------------------------------

    def examples(self) -> list[Example]:
        """Return every labeled example, oldest first."""
        return self.store.examples()

    def memory(self, progress: bool = False) -> Memory:
        """Return the labeled set as vectors: the FAISS cache, rebuilt if it is stale."""
        revision = self.store.revision
        if self._memory is not None and self._memory[0] == revision:
            return self._memory[1]
        key = self.encoder.key
        missing = self.store.missing_embeddings(key)
        if missing:
            vectors = self.encoder.encode([text for _, text in missing], progress=progress)
            self.store.put_embeddings(key, [i for i, _ in missing], vectors)
        ids, vectors = self.store.embeddings(key)
        expected = {
            "encoder": key,
            "revision": revision,
            "workspace_id": self.store.get_setting("workspace_id"),
        }
        index = VectorIndex.load(self.path, expected)
        if index is None:
            index = VectorIndex.build(ids, vectors)
            index.save(self.path, expected)
        examples = {e.id: (e.text, e.label) for e in self.store.examples()}
        memory = Memory(index, examples, vectors, ids)
        self._memory = (revision, memory)
        return memory

    def classify(
        self,
        texts: Sequence[str],
        k: int | None = None,
        explain: bool = False,
        progress: bool = False,
        llm: LLMSettings | bool | None = None,
    ) -> list[Prediction]:
        """Classify ``texts``; one :class:`Prediction` each, in order.

        Args:
            texts: Non-empty texts.
            k: Neighbours that vote (default: the workspace's setting, else 10).
            explain: Attach the neighbours as evidence.
            progress: Show a progress bar while embedding.
            llm: LLM settings that win over ``FEWSHOT_LLM_*`` and the workspace's; None uses
                those when a URL is set; False answers without an LLM. See
                :mod:`fewshot.stages.llm` for the answer handling and the fallbacks.
        """
        k = int(self.store.get_setting("k", DEFAULT_K)) if k is None else k
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}.")
        cleaned = [clean_text(t, "text", f"text {i}") for i, t in enumerate(texts, start=1)]
        if self.store.count() == 0:
            raise WorkspaceError(
                f"{self.path}: no labeled examples yet; "
                "add some with `fewshot add` or `fewshot import`."
            )
        stage = RetrievalStage(self.memory(progress), Vote(k=k))
        from fewshot.stages.llm import configured

        llm_stage = configured(stage.memory, self.store.settings(), llm, k)
        vectors = self.encoder.encode(cleaned, progress=progress)
        predictions = stage.predict(cleaned, vectors, explain=explain)
        if llm_stage is not None:
            # A configured LLM is the user's explicit choice, and the SetFit gate cannot
            # measure it without spending LLM calls, so SetFit never takes over from it.
            return llm_stage.predict(vectors, predictions, explain=explain, progress=progress)
        from fewshot.training import serve

        served = serve(self, cleaned, predictions, k, explain=explain)
        return predictions if served is None else served  # SetFit; retrieval: unseen labels

    def prompt(
        self, text: str, k: int | None = None, llm: LLMSettings | bool | None = None
    ) -> PromptPreview:
        """Return the few-shot prompt that would be sent to the LLM for ``text`` (sends nothing).

        Args:
            text: The text to classify.
            k: Demonstrations when ``prompt_k`` is not set (default: the setting ``k``, else 10).
            llm: As for :meth:`classify`; only used to show the endpoint and model.
        """
        from fewshot.stages.llm import preview

        k = int(self.store.get_setting("k", DEFAULT_K)) if k is None else k
        query = clean_text(text, "text", "text 1")
        if self.store.count() == 0:
            raise WorkspaceError(f"{self.path}: no labeled examples yet to show as demonstrations.")
        stage = RetrievalStage(self.memory(), Vote(k=k))
        vectors = self.encoder.encode([query])
        answer = stage.predict([query], vectors)[0]
        return preview(stage.memory, vectors, answer, self.store.settings(), llm, k)

    def config(
        self, key: str | None = None, value: str | None = None, unset: bool = False
    ) -> dict[str, Any]:
        """Show or change the LLM and prompt settings (``llm_url``, ``prompt_k``...).

        With no ``key``, return them all (None = unset); with ``value``, set ``key``; with
        ``unset``, clear it. Returns the settings shown. The API key is never a setting.
        """
        from fewshot import policy
        from fewshot.stages.llm import SETTINGS, parse_setting

        stored = self.store.settings()
        if key in policy.SETTINGS:  # the SetFit settings: min_per_label, max_steps...
            return {key: policy.configure(self.store, key, value, unset)}
        if key is not None:
            if value is not None or unset:
                parsed = parse_setting(key, None if unset else value, stored)
                self.store.set_setting(key, parsed)
                stored[key] = parsed
            else:
                parse_setting(key, None, stored)  # an unknown key is an error
            return {key: stored.get(key)}
        setfit = {name: policy.setting(stored, name) for name in policy.SETTINGS}
        return {**{name: stored.get(name) for name in SETTINGS}, **setfit}

    def status(self) -> dict[str, Any]:
        """Return the workspace's state (the ``status`` contract of DESIGN.md)."""
        from fewshot import models, training
        from fewshot.backends.base import resolve

        serving = models.serving(self.store)
        stage = "retrieval" if serving is None else "setfit"
        return {
            "path": str(self.path),
            "examples": self.store.count(),
            "labels": self.store.label_counts(),
            "stage": "llm" if resolve(None, self.store.settings()) is not None else stage,
            "threshold": self.min_per_label,
            "encoder": self.model,
            "model": None if serving is None else serving["version"],
            "models": models.listing(self.store),
            "training": training.is_training(self.path),
            "training_due": self.training_due(),
        }

    def evaluate(
        self,
        path: str | os.PathLike[str],
        text_field: str = "text",
        label_field: str = "label",
        k: int | None = None,
        plot: str | os.PathLike[str] | None = None,
        progress: bool = False,
    ) -> EvalReport:
        """Classify a labeled file as the workspace serves now and score it (``fewshot eval``).

        See :func:`fewshot.evaluate.evaluate` for the arguments and the report.
        """
        from fewshot.evaluate import evaluate

        return evaluate(self, path, text_field, label_field, k=k, plot=plot, progress=progress)

    def export_rows(self) -> list[dict[str, Any]]:
        """Return the labeled set as rows ``{text, label, source}``, oldest first."""
        return [{"text": e.text, "label": e.label, "source": e.source} for e in self.examples()]


def _directory(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise WorkspaceError(f"{path}: expected a workspace directory, found a file.")
    return path


__all__ = ["AddResult", "Workspace", "resolve_store"]
