"""The Workspace: a persistent classifier on disk (SQLite + a FAISS cache + models).

A thin facade: it opens the workspace's parts (the store, the corpus, the model registry,
the settings) and gives each user action one method, which hands those parts to the task
that does the work (:mod:`fewshot.tasks`). No SQL and no rule lives here. The layers and
the workspace format are described in ``docs/architecture.md``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fewshot.backends.base import LLMSettings
from fewshot.corpus import Corpus, Row, file_rows, labeled_rows
from fewshot.embed import DEFAULT_MODEL, Encoder
from fewshot.errors import WorkspaceError
from fewshot.labelset import LabelSet, file_labels
from fewshot.settings import SETTINGS, Settings, Value, parse
from fewshot.stages.retrieval import Memory
from fewshot.storage.label_log import LabelLog
from fewshot.storage.registry import ModelVersion, Registry
from fewshot.storage.store import DB_NAME, Store
from fewshot.tasks import answer
from fewshot.tasks import train as training
from fewshot.values import AddResult, Example, Prediction, TrainReport

if TYPE_CHECKING:
    import subprocess

    from fewshot.stages.llm import PromptPreview
    from fewshot.tasks.evaluate import EvalReport
    from fewshot.tasks.label import LabelSession

DEFAULT_STORE = "index"
STORE_ENV = "FEWSHOT_STORE"


def resolve_store(path: str | os.PathLike[str] | None) -> Path:
    """Return the workspace directory: ``path``, else ``$FEWSHOT_STORE``, else ``./index``."""
    return Path(path or os.environ.get(STORE_ENV) or DEFAULT_STORE)


class Workspace(LabelSet):
    """A persistent few-shot classifier stored in one directory.

    Open one with :meth:`open` or :meth:`create`; use it as a context manager to close it.
    """

    def __init__(self, path: Path, store: Store) -> None:
        self.path = path
        self.store = store
        self.settings = Settings(store)
        self.registry = Registry(store, path)
        self.corpus = Corpus(path, store, Encoder(self.model))

    # -- life cycle -----------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str] | None = None,
        model: str = DEFAULT_MODEL,
        min_per_label: int | None = None,
    ) -> Workspace:
        """Create a workspace in ``path`` (made if missing; it may hold other files).

        Raises:
            WorkspaceError: If ``path`` is a file or already holds a workspace.
            ConfigError: If ``model`` cannot be loaded or ``min_per_label`` < 1.
        """
        directory = _directory(resolve_store(path))
        if (directory / DB_NAME).exists():
            raise WorkspaceError(f"{directory}: a workspace already exists here.")
        threshold = parse("min_per_label", SETTINGS["min_per_label"].default)
        if min_per_label is not None:
            threshold = parse("min_per_label", min_per_label)
        encoder = Encoder(model)
        if encoder.key != DEFAULT_MODEL:
            _ = encoder.dim  # load it now: a bad name fails before anything is written
        directory.mkdir(parents=True, exist_ok=True)
        store = Store.create(directory / DB_NAME)
        with store.transaction() as conn:
            store.set_setting("model", model if encoder.key == DEFAULT_MODEL else encoder.key, conn)
            store.set_setting("min_per_label", threshold, conn)
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

    @property
    def model(self) -> str:
        """The encoder's model name or path."""
        return str(self.settings.value("model"))

    @property
    def min_per_label(self) -> int:
        """Examples per label at which SetFit training starts."""
        return int(self.settings.value("min_per_label"))

    @property
    def encoder(self) -> Encoder:
        """The base encoder (loaded on first use)."""
        return self.corpus.encoder

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
        return self.add_rows(labeled_rows(texts, labels), source, relabel, progress, train)

    def import_file(
        self,
        path: str | os.PathLike[str],
        text_field: str = "text",
        label_field: str = "label",
        relabel: bool = False,
        progress: bool = False,
        train: str | None = None,
    ) -> AddResult:
        """Import a labeled CSV / TSV / JSONL file (all rows or none); label rows declare labels."""
        file = Path(path)
        rows, declared = file_rows(file, text_field, label_field), file_labels(file, label_field)
        result = self.add_rows(rows, f"import:{file.name}", relabel, progress, train)
        self.declare_labels(declared)
        return result

    def add_rows(
        self,
        rows: Sequence[Row],
        source: str,
        relabel: bool = False,
        progress: bool = False,
        train: str | None = None,
    ) -> AddResult:
        """Add rows made by :func:`labeled_rows` or :func:`file_rows` (see :meth:`add`)."""
        mode = parse("train", train) if train is not None else self.settings.value("train")
        added = self.corpus.add(rows, source, relabel, progress)
        values = self.settings.values()
        trained = training.after_add(self.corpus, self.registry, values, str(mode), progress)
        return replace(added, training=trained)

    def remove(self, texts: Sequence[str]) -> int:
        """Delete the examples with these texts (and their embeddings); return how many."""
        return self.corpus.remove(texts)

    def training_due(self) -> str | None:
        """Why SetFit should train now (the reason), or None (see :mod:`fewshot.policy`)."""
        return training.due(self.corpus, self.registry, self.settings.values())

    def train(
        self, force: bool = False, progress: bool = False, callbacks: Sequence[Any] = ()
    ) -> TrainReport | None:
        """Train SetFit now if due (or ``force``); return the report, or None if not due.

        ``callbacks`` are ``transformers.TrainerCallback`` objects passed to the trainer.
        """
        self.store.check_writable()
        values = self.settings.values()
        return training.train_now(self.corpus, self.registry, values, force, progress, callbacks)

    def wait_for_training(self, progress: bool = False) -> TrainReport | ModelVersion | None:
        """Wait for the training under way and return its version; else :meth:`train` now."""
        values = self.settings.values()
        return training.wait_then_train(self.corpus, self.registry, values, progress=progress)

    def start_background_training(self) -> subprocess.Popen[bytes] | None:
        """Start ``fewshot train`` in a detached process (the ``Popen``), or None if one runs."""
        return training.start_background(self.path)

    def rollback(self, version: int | None = None) -> int | None:
        """Serve model ``version``, or step back one version (to retrieval when none is left)."""
        self.store.check_writable()
        return self.registry.rollback(version)

    def config(
        self, key: str | None = None, value: str | None = None, unset: bool = False
    ) -> dict[str, Any]:
        """Show or change settings: every one with no ``key``, else ``key`` set or unset.

        Returns ``{key: value}`` of the settings shown (a default when none is stored).
        :meth:`settings_listing` adds each one's default and source.
        """
        if key is None:
            return {v.key: v.value for v in self.settings.listing()}
        if unset or value is not None:
            changed = self.settings.unset(key) if unset else self.settings.set(key, str(value))
            self.corpus = Corpus(self.path, self.store, Encoder(self.model))  # `model` may change
            return {key: changed}
        return {key: self.settings.describe(key).value}

    def settings_listing(self) -> list[Value]:
        """Return every setting with its value, default and source (``fewshot config``)."""
        return self.settings.listing()

    def label_session(
        self,
        texts: list[str],
        source: str = "label",
        order: str = "uncertain",
        random_state: int = 0,
        retry_skipped: bool = False,
        progress: bool = False,
    ) -> LabelSession:
        """Start a labeling session over ``texts`` (``fewshot label``; see ``tasks.label``)."""
        from fewshot.tasks.label import Desk, LabelSession

        self.store.check_writable()
        desk = Desk(
            self.corpus,
            LabelLog(self.store),
            self.registry,
            self.settings,
            lambda text: self.classify([text], explain=True)[0],
            lambda text, label, src, mode: self.add(
                [text], label, source=src, relabel=True, train=mode
            ),
        )
        return LabelSession(desk, texts, source, order, random_state, retry_skipped, progress)

    # -- reading --------------------------------------------------------------------------

    def examples(self) -> list[Example]:
        """Return every labeled example, oldest first."""
        return self.corpus.examples()

    def memory(self, progress: bool = False) -> Memory:
        """Return the labeled set as vectors: the FAISS cache, rebuilt if it is stale."""
        return self.corpus.memory(progress)

    def classify(
        self,
        texts: Sequence[str],
        k: int | None = None,
        explain: bool = False,
        progress: bool = False,
        llm: answer.LLMChoice = None,
        stage: str | None = None,
    ) -> list[Prediction]:
        """Classify ``texts``; one :class:`Prediction` each, in order.

        Args:
            texts: Non-empty texts.
            k: Neighbours that vote (default: the workspace's setting ``k``, 10).
            explain: Attach the neighbours as evidence.
            progress: Show a progress bar while embedding.
            llm: LLM settings that win over ``FEWSHOT_LLM_*`` and the workspace's; None uses
                those when a URL is set; False answers without an LLM. See
                :mod:`fewshot.tasks.answer` for who answers.
            stage: Who answers (``auto``, ``retrieval``, ``setfit``, ``setfit:vN``, ``llm``);
                default: the setting ``stage``.
        """
        values = self.settings.values()
        k = int(values["k"]) if k is None else k
        stage = str(values["stage"]) if stage is None else stage
        ask = answer.Ask(k, explain, progress, llm, stage)
        return answer.classify(self.corpus, self.registry, values, texts, ask)

    def prompt(
        self, text: str, k: int | None = None, llm: answer.LLMChoice = None
    ) -> PromptPreview:
        """Return the few-shot prompt that would be sent to the LLM for ``text`` (sends nothing).

        Args:
            text: The text to classify.
            k: Demonstrations when ``prompt_k`` is not set (default: the setting ``k``).
            llm: As for :meth:`classify`; only used to show the endpoint and model.
        """
        values = self.settings.values()
        return answer.prompt(self.corpus, values, text, int(values["k"]) if k is None else k, llm)

    def status(self) -> dict[str, Any]:
        """Return the workspace's state (see :func:`fewshot.tasks.status.status`)."""
        from fewshot.tasks.status import status

        return status(self.corpus, self.registry, self.settings.values())

    def evaluate(
        self,
        path: str | os.PathLike[str],
        text_field: str = "text",
        label_field: str = "label",
        k: int | None = None,
        plot: str | os.PathLike[str] | None = None,
        progress: bool = False,
        llm: answer.LLMChoice = None,
    ) -> EvalReport:
        """Classify a labeled file as the workspace serves now and score it (``fewshot eval``).

        ``llm`` is as for :meth:`classify`. See :func:`fewshot.tasks.evaluate.evaluate` for
        the report; nothing is changed.
        """
        from fewshot.tasks.evaluate import evaluate

        _ = self.encoder.dim  # load the encoder first: throughput excludes the model load
        known = set(self.corpus.label_counts())

        def classify(texts: list[str]) -> list[Prediction]:
            return self.classify(texts, k=k, progress=progress, llm=llm)

        oos = str(self.settings.value("out_of_scope_label"))
        return evaluate(classify, known, path, text_field, label_field, plot, oos)

    def compare(
        self,
        path: str | os.PathLike[str],
        text_field: str = "text",
        label_field: str = "label",
        k: int | None = None,
        llm: answer.LLMChoice = None,
    ) -> list[EvalReport]:
        """Score every stage this workspace can run on one labeled file (``eval --compare``).

        Retrieval, each SetFit version whose files are there, and the LLM when one is
        configured, on the same texts; nothing is changed.
        """
        from fewshot.backends.base import resolve
        from fewshot.tasks.evaluate import compare

        _ = self.encoder.dim  # load the encoder first: throughput excludes the model load
        names = ["retrieval"]
        names += [m.name for m in self.registry.versions() if self.registry.available(m)]
        given = llm if isinstance(llm, LLMSettings) else None
        if llm is not False and resolve(given, self.store.settings()) is not None:
            names.append("llm")

        def run(stage: str) -> Callable[[list[str]], list[Prediction]]:
            return lambda texts: self.classify(texts, k=k, llm=llm, stage=stage)

        known = set(self.corpus.label_counts())
        oos = str(self.settings.value("out_of_scope_label"))
        return compare({n: run(n) for n in names}, known, path, text_field, label_field, None, oos)

    def export_rows(self) -> list[dict[str, Any]]:
        """Return the declared labels' rows (:meth:`label_rows`), then ``{text, label, source}``."""
        examples = [{"text": e.text, "label": e.label, "source": e.source} for e in self.examples()]
        return [*self.label_rows(), *examples]


def _directory(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise WorkspaceError(f"{path}: expected a workspace directory, found a file.")
    return path


__all__ = [
    "AddResult",
    "Workspace",
    "resolve_store",
]
