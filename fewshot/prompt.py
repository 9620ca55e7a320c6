"""Few-shot prompts: retrieved, labeled neighbours become the demonstrations of a chat prompt.

:func:`build_prompt` is a pure function from (query, neighbours, label set, template,
options) to chat messages. Its shape:

* a **system** message states the label set and asks for exactly one label;
* each demonstration is a **user** message (its text) answered by an **assistant** message
  (its label), so the model sees the reply format it must follow;
* the last **user** message is the query.

The choices it exposes follow the literature on in-context examples: retrieved, similar
demonstrations beat random ones (Liu et al. 2021); order and label bias move accuracy
(Zhao et al. 2021); with many labels the prompt can show only part of the label space
(Milios et al. 2023). No language model can run where this was written, so none of the
options was measured here; the defaults are the ones those papers support, and every option
is exposed so it can be measured against a real model.

Budgets are in characters (roughly 4 per token for English): each demonstration text is cut
to ``max_chars``, the query to ``query_chars``, the stated labels take at most a third of
``context_chars``, and demonstrations are added, most important first, while the whole prompt
stays within ``context_chars``, however many labels exist.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fewshot.errors import ConfigError
from fewshot.values import Neighbor

SELECTIONS = ("top-k", "per-label", "diverse")
ORDERS = ("similar-last", "similar-first", "shuffled")
DEFAULT_PROMPT_K = 10
ELLIPSIS = "…"

DEFAULT_SYSTEM = (
    "You classify texts. Each user message is one text; reply with its label.\n"
    "The labels are:\n{labels}\n\n"
    "Answer with exactly one label from this list, written exactly as it appears, and nothing "
    "else."
)
DEFAULT_USER = "Text: {text}"


@dataclass(frozen=True)
class PromptTemplate:
    """The wording of a prompt.

    Args:
        system: The system message; ``{labels}`` becomes the label list, one ``- label`` a line.
        user: Each text's message; ``{text}`` becomes the text.
    """

    system: str = DEFAULT_SYSTEM
    user: str = DEFAULT_USER

    def __post_init__(self) -> None:
        if "{labels}" not in self.system:
            raise ConfigError("the prompt's system template must contain '{labels}'.")
        if "{text}" not in self.user:
            raise ConfigError("the prompt's user template must contain '{text}'.")


@dataclass(frozen=True)
class PromptOptions:
    """How demonstrations are chosen, ordered and cut.

    Args:
        k: Demonstrations (with ``per-label``: demonstrations per label); None means the
            retrieval stage's ``k``, else 10.
        selection: ``top-k`` (the k most similar neighbours), ``per-label`` (the k most
            similar of each label) or ``diverse`` (k in all, taken label by label in turn, so
            as many labels as possible are shown).
        order: ``similar-last`` (the most similar demonstration next to the query),
            ``similar-first``, or ``shuffled`` (seeded by ``random_state`` and the query).
        max_chars: Characters kept of each demonstration text (at most context_chars/4).
        query_chars: Characters kept of the query (at most context_chars/2).
        context_chars: Characters of all messages together.
        random_state: Seed of the ``shuffled`` order.
    """

    k: int | None = None
    selection: str = "top-k"
    order: str = "similar-last"
    max_chars: int = 500
    query_chars: int = 2000
    context_chars: int = 12000
    random_state: int = 0

    def __post_init__(self) -> None:
        if self.k is not None and self.k < 1:
            raise ConfigError(f"prompt k must be at least 1, got {self.k}.")
        if self.selection not in SELECTIONS:
            raise ConfigError(
                f"prompt selection: expected one of {', '.join(SELECTIONS)}, "
                f"found '{self.selection}'."
            )
        if self.order not in ORDERS:
            raise ConfigError(
                f"prompt order: expected one of {', '.join(ORDERS)}, found '{self.order}'."
            )
        if self.context_chars < 2000:
            raise ConfigError(
                f"prompt context_chars must be at least 2000, got {self.context_chars}."
            )
        for name in ("max_chars", "query_chars"):
            if getattr(self, name) < 20:
                raise ConfigError(f"prompt {name} must be at least 20, got {getattr(self, name)}.")

    @property
    def text_limit(self) -> int:
        """Characters kept of each demonstration text (at most a quarter of the budget)."""
        return min(self.max_chars, self.context_chars // 4)

    @property
    def query_limit(self) -> int:
        """Characters kept of the query (at most half of the budget)."""
        return min(self.query_chars, self.context_chars // 2)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> PromptOptions:
        """Build options from workspace settings (``prompt_k``, ``prompt_selection``...)."""
        values = {
            name: settings[f"prompt_{name}"]
            for name in ("k", "selection", "order", "max_chars", "query_chars", "context_chars")
            if settings.get(f"prompt_{name}") is not None
        }
        return cls(**values)


@dataclass(frozen=True)
class ChatMessage:
    """One chat message."""

    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        """Return the message as the chat-completions API writes it."""
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Prompt:
    """A built prompt: the messages, and what went into them.

    Attributes:
        messages: The chat messages, in order.
        demonstrations: The neighbours shown, in the order they appear (texts uncut).
        labels: The labels stated, in the order they appear.
        query: The query as sent (cut to ``query_limit``).
    """

    messages: tuple[ChatMessage, ...]
    demonstrations: tuple[Neighbor, ...]
    labels: tuple[str, ...]
    query: str

    def to_dicts(self) -> list[dict[str, str]]:
        """Return the messages as the chat-completions API writes them."""
        return [m.to_dict() for m in self.messages]


def truncate(text: str, limit: int) -> str:
    """Return ``text`` cut to at most ``limit`` characters, ending in ``…`` when cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + ELLIPSIS


def _by_similarity(neighbors: Sequence[Neighbor]) -> list[Neighbor]:
    # Stable: equal similarities keep the order the index returned them in.
    return sorted(neighbors, key=lambda n: -n.similarity)


def _round_robin(neighbors: Sequence[Neighbor], per_label: int | None) -> list[Neighbor]:
    """Each label's best, then each label's second best...; labels by their best similarity."""
    groups: dict[str, list[Neighbor]] = {}
    for near in _by_similarity(neighbors):
        groups.setdefault(near.label, []).append(near)
    depth = max((len(g) for g in groups.values()), default=0)
    if per_label is not None:
        depth = min(depth, per_label)
    return [g[rank] for rank in range(depth) for g in groups.values() if rank < len(g)]


def select(neighbors: Sequence[Neighbor], k: int, selection: str) -> list[Neighbor]:
    """Return the demonstrations, most important first (the budget drops the last ones).

    Args:
        neighbors: Candidate neighbours of the query.
        k: Demonstrations in all (``top-k``, ``diverse``) or per label (``per-label``).
        selection: One of :data:`SELECTIONS`.
    """
    if selection == "top-k":
        return _by_similarity(neighbors)[:k]
    if selection == "per-label":
        return _round_robin(neighbors, per_label=k)
    if selection == "diverse":
        return _round_robin(neighbors, per_label=None)[:k]
    raise ConfigError(
        f"prompt selection: expected one of {', '.join(SELECTIONS)}, found '{selection}'."
    )


def arrange(demos: Sequence[Neighbor], order: str, query: str, random_state: int) -> list[Neighbor]:
    """Return ``demos`` in the order they are shown (deterministic for every ``order``)."""
    first = _by_similarity(demos)
    if order == "similar-first":
        return first
    if order == "similar-last":
        return first[::-1]
    if order == "shuffled":
        random.Random(f"{random_state}\x00{query}").shuffle(first)
        return first
    raise ConfigError(f"prompt order: expected one of {', '.join(ORDERS)}, found '{order}'.")


def _stated_labels(
    demos: Sequence[Neighbor], labels: Sequence[str], budget: int
) -> tuple[str, ...]:
    """Return the labels to state, sorted by name.

    Every label when the list fits ``budget``; else the demonstrations' labels, then the
    others in the caller's priority order, while they fit.
    """
    everything = list(dict.fromkeys(labels))

    def cost(label: str) -> int:
        return len(label) + 3  # "- " and the newline

    if sum(cost(label) for label in everything) <= budget:
        return tuple(sorted(everything))
    chosen: list[str] = []
    used = 0
    for label in dict.fromkeys([n.label for n in demos] + everything):
        if used + cost(label) <= budget:
            chosen.append(label)
            used += cost(label)
    return tuple(sorted(chosen))


def build_prompt(
    query: str,
    neighbors: Sequence[Neighbor],
    labels: Sequence[str],
    template: PromptTemplate | None = None,
    options: PromptOptions | None = None,
) -> Prompt:
    """Build the few-shot chat prompt for ``query``. Pure: same inputs, same prompt.

    Args:
        query: The text to classify.
        neighbors: Labeled examples retrieved for it (any order; similarity decides).
        labels: The label set, most likely first: when the list is too long for the budget,
            the demonstrations' labels and then the first ones are stated.
        template: The wording (default :class:`PromptTemplate`).
        options: Selection, order and budgets (default :class:`PromptOptions`).

    Raises:
        ConfigError: If the template, the labels and the query alone exceed the budget.
    """
    template = template or PromptTemplate()
    options = options or PromptOptions()
    k = options.k or DEFAULT_PROMPT_K
    candidates = select(neighbors, k, options.selection)
    stated = _stated_labels(candidates, labels, options.context_chars // 3)
    if not stated:
        raise ConfigError("no label fits the prompt's label budget; raise prompt_context_chars.")
    label_list = "\n".join(f"- {label}" for label in stated)
    system = ChatMessage("system", template.system.replace("{labels}", label_list))
    sent_query = truncate(query, options.query_limit)
    last = ChatMessage("user", template.user.replace("{text}", sent_query))
    used = len(system.content) + len(last.content)
    if used > options.context_chars:
        raise ConfigError(
            f"the prompt's template, labels and query take {used} characters, more than "
            f"prompt_context_chars ({options.context_chars}); shorten the template or raise it."
        )
    allowed = set(stated)
    kept: list[Neighbor] = []
    for near in candidates:
        size = len(template.user) + min(len(near.text), options.text_limit) + len(near.label)
        if near.label not in allowed:
            continue
        if used + size > options.context_chars:
            break
        kept.append(near)
        used += size
    shown = arrange(kept, options.order, query, options.random_state)
    messages = [system]
    for near in shown:
        text = truncate(near.text, options.text_limit)
        messages.append(ChatMessage("user", template.user.replace("{text}", text)))
        messages.append(ChatMessage("assistant", near.label))
    messages.append(last)
    return Prompt(tuple(messages), tuple(shown), stated, sent_query)


def with_k(options: PromptOptions, k: int) -> PromptOptions:
    """Return ``options`` with ``k`` filled in when it was left to the retrieval stage."""
    return options if options.k is not None else replace(options, k=k)
