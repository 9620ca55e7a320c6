"""The prompt builder: a pure function, checked against golden outputs and by its properties.

Golden files live in tests/golden/; the tests only compare against them. After an intended
change of wording, regenerate them with ``python tests/golden/regenerate.py`` (never run by the
tests) and review the diff. FEWSHOT_UPDATE_GOLDEN no longer means anything: a mismatch fails.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fewshot.errors import ConfigError
from fewshot.prompt import PromptOptions, PromptTemplate, build_prompt, truncate
from fewshot.values import Neighbor

GOLDEN = Path(__file__).parent / "golden"
LABELS = ["refund", "shipping", "account", "technical"]
QUERY = "when will my order arrive?"
# Retrieved neighbours of QUERY, most similar first (as FAISS returns them).
NEIGHBORS = [
    Neighbor("My package has not arrived yet", "shipping", 0.71, 8),
    Neighbor("Where is my parcel? It was due on Monday", "shipping", 0.66, 7),
    Neighbor("I want my money back for this order", "refund", 0.52, 1),
    Neighbor("How long does express delivery take?", "shipping", 0.50, 12),
    Neighbor("Can I cancel and get a full refund?", "refund", 0.41, 6),
    Neighbor("The page keeps loading forever on my phone", "technical", 0.30, 21),
    Neighbor("How do I reset my password?", "account", 0.22, 14),
]


def _record(query: str, options: PromptOptions, labels: list[str] = LABELS) -> dict[str, object]:
    prompt = build_prompt(query, NEIGHBORS, labels, options=options)
    return {
        "messages": prompt.to_dicts(),
        "labels": list(prompt.labels),
        "demonstrations": [n.to_dict() for n in prompt.demonstrations],
    }


CASES = {
    "top_k_similar_last": PromptOptions(k=3),
    "top_k_similar_first": PromptOptions(k=3, order="similar-first"),
    "per_label": PromptOptions(k=1, selection="per-label"),
    "diverse": PromptOptions(k=4, selection="diverse"),
    "shuffled": PromptOptions(k=5, order="shuffled", random_state=7),
    "truncated": PromptOptions(k=2, max_chars=20, query_chars=20),
}


def golden_record(name: str) -> dict[str, object]:
    """The record a case must give, as tests/golden/ holds it (written by regenerate.py)."""
    return json.loads((GOLDEN / f"prompt_{name}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_prompt_matches_golden_output(name: str) -> None:
    assert _record(QUERY, CASES[name]) == golden_record(name)


def test_the_old_update_variable_neither_writes_nor_passes_a_mismatch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # FEWSHOT_UPDATE_GOLDEN=1 once made the golden test write its own expectation. Now, with it
    # set, the golden test still fails when a case's record differs from its file (here the
    # "similar last" case is given the "similar first" options), and no golden file changes.
    monkeypatch.setenv("FEWSHOT_UPDATE_GOLDEN", "1")
    assert os.environ["FEWSHOT_UPDATE_GOLDEN"] == "1"
    before = {path.name: path.read_bytes() for path in GOLDEN.iterdir()}
    test_prompt_matches_golden_output("top_k_similar_last")
    monkeypatch.setitem(CASES, "top_k_similar_last", CASES["top_k_similar_first"])
    with pytest.raises(AssertionError):
        test_prompt_matches_golden_output("top_k_similar_last")
    assert {path.name: path.read_bytes() for path in GOLDEN.iterdir()} == before


def test_prompt_states_every_label_asks_for_one_and_ends_with_the_query() -> None:
    prompt = build_prompt(QUERY, NEIGHBORS, LABELS, options=PromptOptions(k=3))
    system = prompt.messages[0]
    assert system.role == "system"
    assert "exactly one label" in system.content
    assert [line[2:] for line in system.content.splitlines() if line.startswith("- ")] == sorted(
        LABELS
    )
    assert prompt.labels == tuple(sorted(LABELS))
    assert prompt.messages[-1].to_dict() == {"role": "user", "content": f"Text: {QUERY}"}


def test_top_k_shows_the_k_most_similar_with_the_most_similar_last() -> None:
    prompt = build_prompt(QUERY, list(reversed(NEIGHBORS)), LABELS, options=PromptOptions(k=3))
    assert [n.id for n in prompt.demonstrations] == [1, 7, 8]  # 0.52, 0.66, 0.71
    pairs = prompt.to_dicts()[1:-1]
    assert [m["role"] for m in pairs] == ["user", "assistant"] * 3
    assert pairs[-2]["content"] == "Text: My package has not arrived yet"
    assert pairs[-1]["content"] == "shipping"


def test_similar_first_reverses_the_order() -> None:
    prompt = build_prompt(
        QUERY, NEIGHBORS, LABELS, PromptTemplate(), PromptOptions(k=3, order="similar-first")
    )
    assert [n.id for n in prompt.demonstrations] == [8, 7, 1]


def test_per_label_takes_the_nearest_of_each_label() -> None:
    prompt = build_prompt(
        QUERY, NEIGHBORS, LABELS, options=PromptOptions(k=2, selection="per-label")
    )
    ids = {n.id for n in prompt.demonstrations}
    assert ids == {8, 7, 1, 6, 21, 14}  # 2 shipping, 2 refund, 1 technical, 1 account


def test_diverse_shows_every_label_before_a_second_of_any() -> None:
    prompt = build_prompt(QUERY, NEIGHBORS, LABELS, options=PromptOptions(k=4, selection="diverse"))
    assert sorted(n.label for n in prompt.demonstrations) == sorted(LABELS)
    top_k = build_prompt(QUERY, NEIGHBORS, LABELS, options=PromptOptions(k=4))
    assert {n.label for n in top_k.demonstrations} == {"shipping", "refund"}  # the control


def test_shuffled_is_deterministic_and_follows_the_seed() -> None:
    def order(seed: int) -> list[int]:
        options = PromptOptions(k=7, order="shuffled", random_state=seed)
        return [
            n.id for n in build_prompt(QUERY, NEIGHBORS, LABELS, options=options).demonstrations
        ]

    assert order(0) == order(0)
    assert sorted(order(0)) == sorted(n.id for n in NEIGHBORS)
    assert len({tuple(order(seed)) for seed in range(6)}) > 1


def test_long_texts_are_cut_to_the_budget() -> None:
    assert truncate("abcdef", 6) == "abcdef"
    assert truncate("abcdefg", 6) == "abcde…"
    long = "word " * 400
    options = PromptOptions(k=2, max_chars=50, query_chars=80)
    prompt = build_prompt(long, [Neighbor(long, "refund", 0.9)], LABELS, options=options)
    assert prompt.query == truncate(long, 80)
    assert len(prompt.query) == 80
    assert prompt.query.endswith("…")
    assert all(len(m["content"]) <= len("Text: ") + 80 for m in prompt.to_dicts()[1:])
    assert prompt.demonstrations[0].text == long  # the record keeps the full text


def test_many_labels_stay_within_the_context_budget() -> None:
    labels = [f"category number {i:04d}" for i in range(2000)]
    neighbors = [
        Neighbor(f"example text {i} " * 30, labels[i * 37], 0.9 - i / 100) for i in range(40)
    ]
    options = PromptOptions(k=40, context_chars=6000)
    prompt = build_prompt(QUERY, neighbors, labels, options=options)
    assert sum(len(m.content) for m in prompt.messages) <= 6000
    assert 0 < len(prompt.labels) < len(labels)
    assert {n.label for n in prompt.demonstrations} <= set(prompt.labels)
    assert len(prompt.demonstrations) >= 1
    # The most similar demonstration's label is stated even though it sorts late.
    assert neighbors[0].label in prompt.labels


def test_priority_decides_which_labels_are_stated_when_not_all_fit() -> None:
    labels = [f"label {i:04d}" for i in range(1000)]
    ranked = [*reversed(labels)]
    prompt = build_prompt(QUERY, [], ranked, options=PromptOptions(context_chars=2000))
    assert "label 0999" in prompt.labels
    assert "label 0000" not in prompt.labels


def test_braces_and_placeholders_in_texts_are_sent_verbatim() -> None:
    near = [Neighbor("price is {text} and {labels}", "refund", 0.9)]
    prompt = build_prompt("why {0}?", near, ["refund", "x{labels}"], options=PromptOptions(k=1))
    assert prompt.to_dicts()[1]["content"] == "Text: price is {text} and {labels}"
    assert prompt.to_dicts()[-1]["content"] == "Text: why {0}?"
    assert "- x{labels}" in prompt.to_dicts()[0]["content"]


def test_custom_template_is_used() -> None:
    template = PromptTemplate(system="Pick one of:\n{labels}", user="Q: {text}")
    prompt = build_prompt(QUERY, NEIGHBORS[:1], LABELS, template, PromptOptions(k=1))
    assert prompt.to_dicts()[0]["content"].startswith("Pick one of:\n- account")
    assert prompt.to_dicts()[-1]["content"] == f"Q: {QUERY}"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"selection": "random"}, "expected one of top-k, per-label, diverse, found 'random'"),
        ({"order": "best"}, "expected one of similar-last, similar-first, shuffled"),
        ({"k": 0}, "prompt k must be at least 1, got 0"),
        ({"context_chars": 100}, "context_chars must be at least 2000"),
        ({"max_chars": 5}, "prompt max_chars must be at least 20, got 5"),
    ],
)
def test_bad_options_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PromptOptions(**kwargs)  # type: ignore[arg-type]


def test_template_without_placeholders_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"must contain '\{labels\}'"):
        PromptTemplate(system="Classify.")
    with pytest.raises(ConfigError, match=r"must contain '\{text\}'"):
        PromptTemplate(user="Text:")


def test_a_template_too_long_for_the_budget_is_a_config_error() -> None:
    template = PromptTemplate(system="x" * 5000 + "{labels}")
    with pytest.raises(ConfigError, match="more than prompt_context_chars"):
        build_prompt(QUERY, NEIGHBORS, LABELS, template, PromptOptions(context_chars=2000))
