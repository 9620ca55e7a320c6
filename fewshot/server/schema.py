"""The bodies ``fewshot serve`` reads and writes, as pydantic models (they make /openapi.json).

A prediction is the record of ``fewshot classify --format json``; an error body is
``{"error": message}`` with the message the CLI prints after ``Error:``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

MAX_K = 1000
"""The largest ``k`` a request may ask for (the CLI has no cap; a server needs one)."""

# Not only whitespace as Python's str.strip() sees it (\x1c-\x1f too), in any regex engine.
Text = Annotated[str, Field(pattern=r"[^\s\x1c-\x1f]", description="A non-blank text.")]


def _integral(value: Any) -> Any:
    """Read 2.0 as 2: JSON Schema's integers include numbers with no fraction."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class _Strict(BaseModel):
    # strict: `"explain": 0` or `"k": "2"` is an error, not read as false or 2
    model_config = ConfigDict(extra="forbid", strict=True)


class _Options(_Strict):
    explain: bool = Field(False, description="Attach the nearest labeled examples (evidence).")
    k: int | None = Field(
        None, ge=1, le=MAX_K, description="Neighbours that vote (default: the setting k)."
    )

    @field_validator("k", mode="before")
    @classmethod
    def _integral_k(cls, value: Any) -> Any:
        return _integral(value)


class OneText(_Options):
    """Classify one text; the answer is one prediction."""

    text: Text


class ManyTexts(_Options):
    """Classify a batch of texts; the answer is a list of predictions, in order."""

    texts: list[Text] = Field(min_length=1)


class LabeledText(_Strict):
    """One labeled example."""

    text: Text
    label: Text


class SameLabel(_Strict):
    """Add texts that share one label (``fewshot add --label L TEXTS``)."""

    texts: list[Text] = Field(min_length=1)
    label: Text
    relabel: bool = Field(False, description="Change the label of texts labeled otherwise.")


class Examples(_Strict):
    """Add labeled examples, each with its own label (``fewshot import``)."""

    examples: list[LabeledText] = Field(min_length=1)
    relabel: bool = Field(False, description="Change the label of texts labeled otherwise.")


def with_batch_limit(openapi: dict[str, Any], limit: int) -> dict[str, Any]:
    """Return the schema with ``maxItems`` on each list of texts: the server's ``--max-batch``.

    Only documented: a longer list is parsed and then refused with a 413 (too large), not a
    422 (malformed).
    """
    shapes = openapi.get("components", {}).get("schemas", {})
    for name, field in (("ManyTexts", "texts"), ("SameLabel", "texts"), ("Examples", "examples")):
        prop = shapes.get(name, {}).get("properties", {}).get(field)
        if prop is not None:
            prop["maxItems"] = limit
    return openapi


def _shape(many: str, one: str, key: str) -> Any:
    """Read a body as ``many`` when it has ``key``, else as ``one`` (errors of one shape only)."""

    def which(value: Any) -> str:
        has = key in value if isinstance(value, dict) else hasattr(value, key)
        return many if has else one

    return Discriminator(which)


ClassifyBody = Annotated[
    Annotated[OneText, Tag("text")] | Annotated[ManyTexts, Tag("texts")],
    _shape("texts", "text", "texts"),
]
ExamplesBody = Annotated[
    Annotated[SameLabel, Tag("texts")] | Annotated[Examples, Tag("examples")],
    _shape("examples", "texts", "examples"),
]


class Neighbor(BaseModel):
    """A labeled example near the text, with its cosine similarity."""

    text: str
    label: str
    similarity: float
    kind: str | None = Field(None, description='"description": a label\'s prior, not an example.')


class Prediction(BaseModel):
    """The record of ``fewshot classify --format json``."""

    model_config = ConfigDict(extra="allow")

    text: str
    label: str
    confidence: float
    stage: str
    scores: dict[str, float]
    fallback: str | None = Field(None, description="Why another stage answered instead.")
    neighbors: list[Neighbor] | None = Field(None, description="With explain.")


class Added(BaseModel):
    """What an add changed (``fewshot add``'s message as numbers)."""

    added: int
    unchanged: int
    relabeled: int
    examples: int = Field(description="Labeled examples in the workspace now.")
    training: str | None = Field(
        description='"background" when this add started a SetFit training, else null.'
    )


class Status(BaseModel):
    """``fewshot status --format json``."""

    model_config = ConfigDict(extra="allow")

    path: str
    examples: int
    labels: dict[str, int]
    stage: str
    model: int | None


class Health(BaseModel):
    """The server is up and its workspace is open."""

    status: str


class Error(BaseModel):
    """Every error: the CLI's message (what, where, how to fix it)."""

    error: str


__all__ = [
    "MAX_K",
    "Added",
    "ClassifyBody",
    "Error",
    "Examples",
    "ExamplesBody",
    "Health",
    "LabeledText",
    "ManyTexts",
    "Neighbor",
    "OneText",
    "Prediction",
    "SameLabel",
    "Status",
    "with_batch_limit",
]
