"""The LLM stage: the retrieved neighbours become a few-shot prompt; a chat model answers.

The reply is mapped to a label, in this order: the exact label; the label up to case, spaces
and surrounding quotes or punctuation; else a label contained in the reply as whole words,
only when exactly one label is (a label found only inside a longer one that is also found,
like ``positive`` in ``very positive``, does not count). Anything else is an unknown answer.

Confidence: when the server returns token logprobs, the probability of the reply it gave
(``exp`` of their sum); otherwise the retrieval stage's score for the label the model chose,
so a disagreement between the two shows as a low confidence. ``scores`` give the chosen label
that confidence and share the rest in proportion to the retrieval scores.

With abstention on (the setting ``abstain``), the prompt also offers "none of these"; that
reply refuses the text (``label: null``, ``abstained: true``, the retrieval stage's best
label as ``best_label``).

A failure never yields a random label: an unknown answer, a timeout, an HTTP error or a
refused connection gives the retrieval stage's answer, with ``stage: "retrieval"`` and
``fallback`` naming the reason (``unknown answer``, ``timeout``, ``http 500``...).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fewshot.backends.base import (
    Backend,
    Completion,
    LLMConfig,
    LLMFailure,
    LLMSettings,
    load,
    redact,
    resolve,
)
from fewshot.errors import ConfigError
from fewshot.prompt import (
    DEFAULT_PROMPT_K,
    DEFAULT_SYSTEM,
    Prompt,
    PromptOptions,
    PromptTemplate,
    build_prompt,
    with_k,
)
from fewshot.stages.retrieval import Memory
from fewshot.stages.scope import NONE_OF_THESE
from fewshot.values import Neighbor, Prediction

POOL = 1024  # neighbours searched for per-label and diverse selection
REPLY_CHARS = 200  # of an unknown reply, kept in the record
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_EDGES = " \t\r\n\"'`*.,:;!?()[]{}<>"


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def parse_answer(reply: str, labels: Sequence[str]) -> str | None:
    """Return the label ``reply`` names, or None when it names none or several.

    Args:
        reply: The model's reply.
        labels: The labels it could answer.
    """
    reply = _THINK.sub("", reply)
    if reply.strip() in labels:
        return reply.strip()
    normal = {_normal(label): label for label in labels}
    bare = _normal(reply).strip(_EDGES)
    if bare in normal:
        return normal[bare]
    spans: dict[str, list[tuple[int, int]]] = {}
    text = _normal(reply)
    for key, label in normal.items():
        pattern = re.compile(rf"(?<!\w){re.escape(key)}(?!\w)")
        found = [m.span() for m in pattern.finditer(text)]
        if found:
            spans[label] = found
    outer = [
        label
        for label, places in spans.items()
        if not all(
            any(a <= s and e <= b and (a, b) != (s, e) for o in spans.values() for a, b in o)
            for s, e in places
        )
    ]
    return outer[0] if len(outer) == 1 else None


def max_tokens(labels: Sequence[str]) -> int:
    """Return a reply length that fits any label, with room for a short preamble."""
    return min(16 + 2 * max((len(label) for label in labels), default=0), 512)


class LLMStage:
    """Answers with a chat model prompted with the retrieved neighbours.

    Args:
        memory: The labeled set (the retrieval stage's).
        backend: The LLM client.
        options: Demonstration selection, order and budgets (``k`` filled in).
        template: The prompt's wording.
        concurrency: Requests in flight at once.
        api_key: The key sent to the server: it is replaced by ``***`` in a reply kept in a
            record (a server may echo it back).
    """

    name = "llm"

    def __init__(
        self,
        memory: Memory,
        backend: Backend,
        options: PromptOptions | None = None,
        template: PromptTemplate | None = None,
        concurrency: int = 4,
        api_key: str | None = None,
        abstain: bool = False,
    ) -> None:
        self.memory = memory
        self.backend = backend
        self.options = options or PromptOptions()
        self.template = template or (abstaining() if abstain else PromptTemplate())
        self.concurrency = concurrency
        self._key = api_key
        # Which LLM this is, as the gate records its measurement (no secrets): the endpoint
        # and the model asked for (read before any call fills in the server's first model).
        self.identity = {"endpoint": backend.endpoint, "model": backend.model}
        self.abstain = abstain

    def prompts(self, vectors: np.ndarray, retrieval: Sequence[Prediction]) -> list[Prompt]:
        """Return the prompt of each query; ``retrieval`` gives the label priority."""
        return prompts(self.memory, vectors, retrieval, self.options, self.template)

    def predict(
        self,
        vectors: np.ndarray,
        retrieval: Sequence[Prediction],
        explain: bool = False,
        progress: bool = False,
    ) -> list[Prediction]:
        """Return one prediction per query: the model's, or the retrieval answer on failure.

        Args:
            vectors: The queries' embeddings.
            retrieval: The retrieval stage's predictions for the same queries (the fallback).
            explain: Attach the demonstrations sent as ``neighbors``.
            progress: Show a progress bar (on stderr) while requests run.
        """
        prompts = self.prompts(vectors, retrieval)
        jobs = list(zip(prompts, retrieval))
        return _run(lambda job: self._answer(*job, explain), jobs, self.concurrency, progress)

    def _answer(self, prompt: Prompt, fallback: Prediction, explain: bool) -> Prediction:
        try:
            completion = self.backend.complete(prompt.to_dicts(), max_tokens(prompt.labels))
        except LLMFailure as failure:
            return replace(fallback, fallback=failure.reason)
        none = [NONE_OF_THESE] if self.abstain and NONE_OF_THESE not in prompt.labels else []
        label = parse_answer(completion.text, [*prompt.labels, *none])
        if none and label == NONE_OF_THESE:
            return replace(
                fallback,
                label=None,
                stage=self.name,
                abstained=True,
                best_label=fallback.label,
                neighbors=_most_similar_first(prompt.demonstrations) if explain else None,
            )
        if label is None:
            reply = redact(completion.text, self._key)[:REPLY_CHARS]  # cut after: no key part
            return replace(fallback, fallback="unknown answer", extra={"reply": reply})
        confidence = _confidence(completion, fallback.scores.get(label, 0.0))
        return Prediction(
            text=fallback.text,
            label=label,
            confidence=confidence,
            stage=self.name,
            scores=_scores(fallback.scores, label, confidence),
            neighbors=_most_similar_first(prompt.demonstrations) if explain else None,
        )


def abstaining() -> PromptTemplate:
    """Return the default wording, with "none of these" offered as an answer."""
    return PromptTemplate(
        system=DEFAULT_SYSTEM
        + f' If the text fits none of these labels, answer exactly "{NONE_OF_THESE}".'
    )


def prompts(
    memory: Memory,
    vectors: np.ndarray,
    retrieval: Sequence[Prediction],
    options: PromptOptions,
    template: PromptTemplate | None = None,
) -> list[Prompt]:
    """Return the prompt of each query.

    Args:
        memory: The labeled set.
        vectors: The queries' embeddings.
        retrieval: The retrieval stage's predictions: the query texts, and the label
            priority (most likely first) used when not every label fits the prompt.
        options: Selection, order and budgets.
        template: The wording.
    """
    k = options.k or DEFAULT_PROMPT_K
    pool = k if options.selection == "top-k" else POOL
    neighbors = memory.neighbors(vectors, pool)
    return [
        build_prompt(
            answer.text,
            near,
            sorted(answer.scores, key=lambda label: -answer.scores[label]),
            template,
            options,
        )
        for answer, near in zip(retrieval, neighbors)
    ]


def _most_similar_first(demonstrations: Sequence[Neighbor]) -> tuple[Neighbor, ...]:
    # Records list evidence most similar first, as retrieval does; `fewshot prompt` shows the
    # order the model saw.
    return tuple(sorted(demonstrations, key=lambda n: -n.similarity))


def _confidence(completion: Completion, retrieval_score: float) -> float:
    if completion.logprobs and not _THINK.search(completion.text):
        return min(max(math.exp(sum(completion.logprobs)), 0.0), 1.0)
    return float(retrieval_score)


def _scores(retrieval: Mapping[str, float], label: str, confidence: float) -> dict[str, float]:
    rest = {name: score for name, score in retrieval.items() if name != label}
    total = sum(rest.values())
    share = 1.0 - confidence
    scores = {
        name: (share * score / total if total > 0 else share / max(len(rest), 1))
        for name, score in rest.items()
    }
    scores[label] = confidence
    return {name: scores[name] for name in sorted(scores)}


def _run(
    answer: Callable[[tuple[Prompt, Prediction]], Prediction],
    jobs: list[tuple[Prompt, Prediction]],
    concurrency: int,
    progress: bool,
) -> list[Prediction]:
    """Answer ``jobs`` with at most ``concurrency`` in flight; results in the jobs' order."""
    workers = max(1, min(concurrency, len(jobs)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fewshot-llm") as pool:
        futures = [pool.submit(answer, job) for job in jobs]
        if progress and len(jobs) > 1:
            from concurrent.futures import as_completed

            from rich.console import Console
            from rich.progress import Progress

            with Progress(console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task("asking the LLM", total=len(futures))
                for _ in as_completed(futures):
                    bar.advance(task)
        return [future.result() for future in futures]


# -- the workspace's glue: the stage and the preview from the settings ----------------------


@dataclass(frozen=True)
class PromptPreview:
    """What ``fewshot prompt`` shows: the prompt, and where it would go (no secrets)."""

    prompt: Prompt
    endpoint: str | None
    model: str | None

    def to_dict(self) -> dict[str, Any]:
        """Return the request that would be sent (its body, without the API key)."""
        return {
            "endpoint": self.endpoint,
            "model": self.model,
            "messages": self.prompt.to_dicts(),
            "labels": list(self.prompt.labels),
            "demonstrations": [n.to_dict() for n in self.prompt.demonstrations],
        }

    def to_text(self) -> str:
        """Return the messages for people: a header, then each message under its role."""
        if self.endpoint is None:
            head = "# no LLM configured (--llm-url, FEWSHOT_LLM_URL or `fewshot config llm_url`)"
        else:
            head = f"# POST {self.endpoint}  model: {self.model or '(the first the server lists)'}"
        blocks = [f"[{m.role}]\n{m.content}" for m in self.prompt.messages]
        return "\n\n".join([head, *blocks])


def _config(stored: Mapping[str, Any], llm: LLMSettings | bool | None) -> LLMConfig | None:
    if llm is False:
        return None
    given = llm if isinstance(llm, LLMSettings) else None
    config = resolve(given, stored)
    if config is None and (llm is True or (given is not None and given != LLMSettings())):
        raise ConfigError(
            "an LLM was asked for but no URL is set; pass --llm-url URL, set FEWSHOT_LLM_URL "
            "or run `fewshot config llm_url URL` (e.g. http://localhost:11434/v1 for Ollama)."
        )
    return config


def configured(
    memory: Memory, stored: Mapping[str, Any], llm: LLMSettings | bool | None, k: int
) -> LLMStage | None:
    """Return the LLM stage the settings ask for, or None when no LLM URL is set.

    Args:
        memory: The labeled set.
        stored: The workspace settings (``llm_*``, ``prompt_*``).
        llm: Explicit settings (they win over the environment and the workspace); None uses
            the environment and the workspace; False means no LLM.
        k: Demonstrations when ``prompt_k`` is not set (the retrieval stage's ``k``).
    """
    config = _config(stored, llm)
    if config is None:
        return None
    options = with_k(PromptOptions.from_settings(stored), k)
    abstain = stored.get("abstain") == "on"
    return LLMStage(
        memory, load(config), options, None, config.concurrency, config.api_key, abstain
    )


def preview(
    memory: Memory,
    vectors: np.ndarray,
    retrieval: Prediction,
    stored: Mapping[str, Any],
    llm: LLMSettings | bool | None,
    k: int,
) -> PromptPreview:
    """Return the prompt that would be sent for one query, and where (nothing is sent)."""
    config = _config(stored, llm)
    options = with_k(PromptOptions.from_settings(stored), k)
    template = abstaining() if stored.get("abstain") == "on" else None
    prompt = prompts(memory, vectors, [retrieval], options, template)[0]
    if config is None:
        return PromptPreview(prompt, None, None)
    return PromptPreview(prompt, load(config).endpoint, config.model)
