"""Every setting of a workspace, in one registry with one parser (``fewshot config``).

A setting is stored in the workspace (its ``settings`` table, as JSON) once the user sets
it; until then it reads as its default. ``fewshot config`` lists every setting with its
value, its default and where the value came from; ``fewshot config KEY VALUE`` parses and
checks VALUE here, so a workspace never holds a value that fails later.

Groups: ``retrieval`` (``k``), ``abstain`` ("none of these": on/off, its target, the
out-of-scope label of eval files), ``setfit`` (threshold, training recipe, gate), ``llm``
(endpoint, model, timeout...; ``FEWSHOT_LLM_URL`` / ``FEWSHOT_LLM_MODEL`` win over the
stored value) and ``prompt`` (demonstrations and budgets). The encoder (``model``) is chosen
when the workspace is created; ``fewshot config model NAME_OR_PATH`` points it at another
(a moved directory, say) once that one loads. The API key is never a setting.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fewshot.backends.base import (
    DEFAULT_BACKEND,
    DEFAULT_CONCURRENCY,
    DEFAULT_TIMEOUT,
    MODEL_ENV,
    URL_ENV,
    check_url,
)
from fewshot.embed import DEFAULT_MODEL, Encoder
from fewshot.errors import ConfigError
from fewshot.prompt import ORDERS, SELECTIONS, PromptOptions
from fewshot.stages.retrieval import DEFAULT_K
from fewshot.stages.scope import DEFAULT_TARGET
from fewshot.storage.store import Store

TRAIN_MODES = ("auto", "never", "background")
STAGES = ("auto", "retrieval", "setfit", "llm")
LOSSES = ("auto", "contrastive", "pairs")
_PROMPT = PromptOptions()
_SECRET_WORDS = ("key", "token", "secret", "password")


@dataclass(frozen=True)
class Setting:
    """One setting: how its text is parsed and checked, its default, and what it does."""

    group: str
    kind: Callable[[str], Any]
    default: Any
    check: Callable[[Any], bool]
    expected: str
    help: str
    env: str | None = None  # an environment variable that wins over the stored value
    settable: bool = True
    note: str | None = None  # what a change does beyond the value (``fewshot config`` says it)


def _int(low: int) -> tuple[Callable[[str], Any], Callable[[Any], bool], str]:
    return int, lambda v: v >= low, f"an integer >= {low}"


def _number(low: float, high: float = math.inf, closed: bool = True) -> Any:
    def check(v: float) -> bool:
        inside = low <= v <= high if closed else low <= v < high
        return math.isfinite(v) and inside

    top = "" if high == math.inf else (f", <= {high:g}" if closed else f", < {high:g}")
    return float, check, f"a finite number >= {low:g}{top}"


def _choice(options: tuple[str, ...]) -> tuple[Callable[[str], Any], Callable[[Any], bool], str]:
    return str, lambda v: v in options, f"one of {', '.join(options)}"


def _text() -> tuple[Callable[[str], Any], Callable[[Any], bool], str]:
    return str, lambda v: bool(v.strip()), "a non-empty text"


def _s(group: str, rule: Any, default: Any, help_text: str, **extra: Any) -> Setting:
    kind, check, expected = rule
    return Setting(group, kind, default, check, expected, help_text, **extra)


SETTINGS: dict[str, Setting] = {
    "model": _s(
        "retrieval",
        _text(),
        DEFAULT_MODEL,
        "the encoder: a sentence-transformers name or a local model directory",
        note=(
            "The examples are embedded again under the new encoder on next use (the vectors "
            "of the old one stay stored); SetFit versions keep their own fine-tuned encoders."
        ),
    ),
    "k": _s("retrieval", _int(1), DEFAULT_K, "neighbours that vote (and are shown)"),
    "calibration": _s(
        "retrieval",
        _choice(("auto", "off")),
        "auto",
        "retrieval's confidence: auto fits it on the labeled set, off leaves the vote's",
    ),
    "stage": _s(
        "retrieval", _choice(STAGES), "auto", "who answers: auto (measured), or one pinned"
    ),
    "abstain": _s(
        "abstain",
        _choice(("off", "on")),
        "off",
        "refuse texts that fit no label (label null, 'none of these')",
    ),
    "abstain_target": _s(
        "abstain",
        _number(0.001, 0.5),
        DEFAULT_TARGET,
        "share of texts like the labeled ones that abstention may refuse",
    ),
    "out_of_scope_label": _s(
        "abstain",
        _text(),
        "out of scope",
        "a label that marks a row of an eval file as out of scope (as an empty label does)",
    ),
    "min_per_label": _s("setfit", _int(1), 8, "examples per label at which SetFit trains"),
    "max_steps": _s("setfit", _int(1), 1000, "step cap of the SetFit model trained"),
    "loss": _s(
        "setfit",
        _choice(LOSSES),
        "auto",
        "training objective: pairs (the SetFit paper's) below 10 labels, contrastive "
        "(in-batch, by label) from 10 on (auto), or the one named",
    ),
    "epochs": _s(
        "setfit", _number(0.01, 1000.0), 10.0, "passes over the examples (loss contrastive)"
    ),
    "pairs_per_example": _s("setfit", _int(2), 40, "pairs drawn per example (loss pairs)"),
    "retrain_growth": _s(
        "setfit", _number(1e-9, 1e6), 0.5, "growth of the labeled set that retrains"
    ),
    "train_label_names": _s(
        "setfit",
        _choice(("on", "off")),
        "on",
        "train on each label's name (or name: description) as one more example (on)",
    ),
    "gate_folds": _s(
        "setfit", _int(2), 3, "the gate holds out one in this many examples per label"
    ),
    "gate_margin": _s(
        "setfit", _number(0.0, 1.0, closed=False), 0.0, "accuracy a candidate must add"
    ),
    "gate_llm_max_calls": _s(
        "llm",
        _int(0),
        200,
        "held-out texts the gate asks a configured LLM (0: it is never measured)",
    ),
    "learning_rate": _s(
        "setfit",
        _number(1e-12, 100.0),
        None,
        "encoder learning rate (default: 1e-4 for loss contrastive, 2e-5 for pairs)",
    ),
    "new_label_confidence": _s(
        "setfit",
        _number(0.0, 1.0),
        0.5,
        "retrieval confidence that answers a label the model never saw",
    ),
    "train": _s("setfit", _choice(TRAIN_MODES), "auto", "what add/import do when training is due"),
    "random_state": _s("setfit", (int, lambda v: True, "an integer"), 0, "seed of SetFit training"),
    "llm_url": _s(
        "llm", _text(), None, "OpenAI-compatible server (base URL or endpoint)", env=URL_ENV
    ),
    "llm_model": _s("llm", _text(), None, "model name on that server", env=MODEL_ENV),
    "llm_backend": _s("llm", _text(), DEFAULT_BACKEND, "backend entry point name"),
    "llm_timeout": _s("llm", _number(0.001, 86400.0), DEFAULT_TIMEOUT, "seconds per reply"),
    "llm_concurrency": _s("llm", _int(1), DEFAULT_CONCURRENCY, "requests in flight at once"),
    "prompt_k": _s("prompt", _int(1), None, "demonstrations (default: k)"),
    "prompt_selection": _s(
        "prompt", _choice(SELECTIONS), _PROMPT.selection, "how demonstrations are chosen"
    ),
    "prompt_order": _s("prompt", _choice(ORDERS), _PROMPT.order, "how they are ordered"),
    "prompt_max_chars": _s(
        "prompt", _int(20), _PROMPT.max_chars, "characters kept of each demonstration"
    ),
    "prompt_query_chars": _s(
        "prompt", _int(20), _PROMPT.query_chars, "characters kept of the query"
    ),
    "prompt_context_chars": _s(
        "prompt", _int(2000), _PROMPT.context_chars, "characters of the whole prompt"
    ),
}


def _unknown(key: str) -> ConfigError:
    hint = ""
    if any(word in key.lower() for word in _SECRET_WORDS):
        hint = " The API key is never stored: set FEWSHOT_LLM_API_KEY or OPENAI_API_KEY."
    return ConfigError(f"unknown setting '{key}'; expected one of: {', '.join(SETTINGS)}.{hint}")


def setting(key: str) -> Setting:
    """Return the definition of ``key``.

    Raises:
        ConfigError: If there is no such setting (the message lists every key).
    """
    found = SETTINGS.get(key)
    if found is None:
        raise _unknown(key)
    return found


def parse(key: str, value: str | int | float, stored: Mapping[str, Any] | None = None) -> Any:
    """Return ``value`` converted and checked for the setting ``key``.

    Args:
        key: The setting.
        value: Its new value, as typed.
        stored: The other stored settings, for checks that span several (prompt budgets).

    Raises:
        ConfigError: If the key is unknown or the value is not what it expects.
    """
    definition = setting(key)
    text = str(value).strip()
    try:
        parsed = definition.kind(text)
    except ValueError:
        parsed = None
    if parsed is None or not definition.check(parsed):
        example = definition.default if definition.default is not None else "VALUE"
        raise ConfigError(
            f"setting '{key}': expected {definition.expected}, got '{value}'; "
            f"for example `fewshot config {key} {example}`."
        )
    if key == "llm_url":
        check_url(parsed, str((stored or {}).get("llm_backend") or DEFAULT_BACKEND))
    if definition.group == "prompt":
        PromptOptions.from_settings({**(stored or {}), key: parsed})  # budgets hold together
    return parsed


@dataclass(frozen=True)
class Value:
    """A setting as ``fewshot config`` lists it: value, default and where the value came from."""

    key: str
    value: Any
    default: Any
    source: str  # "default", "workspace" or the environment variable's name
    help: str

    def to_dict(self) -> dict[str, Any]:
        """Return the entry as a JSON-ready dict."""
        return {
            "key": self.key,
            "value": self.value,
            "default": self.default,
            "source": self.source,
            "help": self.help,
        }


class Settings:
    """The settings of one workspace, read and written through its store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def values(self) -> dict[str, Any]:
        """Return every setting's stored value, or its default (environment not applied)."""
        stored = self.store.settings()
        return {key: stored.get(key, s.default) for key, s in SETTINGS.items()} | {
            key: value for key, value in stored.items() if key not in SETTINGS
        }

    def value(self, key: str) -> Any:
        """Return one setting's stored value, or its default."""
        return self.store.get_setting(key, setting(key).default)

    def describe(self, key: str, environ: Mapping[str, str] | None = None) -> Value:
        """Return ``key``'s value, default and source (an environment variable wins)."""
        definition = setting(key)
        env = os.environ if environ is None else environ
        stored = self.store.settings()
        if definition.env and env.get(definition.env):
            value, source = env[definition.env], definition.env
        elif key in stored and stored[key] is not None:
            value, source = stored[key], "workspace"
        else:
            value, source = definition.default, "default"
        return Value(key, value, definition.default, source, definition.help)

    def listing(self) -> list[Value]:
        """Return every setting, in registry order."""
        return [self.describe(key) for key in SETTINGS]

    def set(self, key: str, value: str | int | float) -> Any:
        """Parse, check and store ``value`` for ``key``; return the parsed value.

        Raises:
            ConfigError: For an unknown key, a bad value, or a setting fixed at creation.
        """
        definition = setting(key)
        if not definition.settable:
            raise ConfigError(
                f"setting '{key}' is chosen when the workspace is created (`fewshot init "
                f"--model NAME_OR_PATH`) and cannot be changed; it is {self.value(key)}."
            )
        parsed = parse(key, value, self.store.settings())
        if key == "model":
            parsed = _loadable_encoder(parsed)
        self.store.set_setting(key, parsed)
        return parsed

    def unset(self, key: str) -> Any:
        """Forget the stored value of ``key``; return its default."""
        definition = setting(key)
        if not definition.settable:
            raise ConfigError(f"setting '{key}' is chosen when the workspace is created.")
        self.store.delete_setting(key)
        return definition.default


def _loadable_encoder(name: str) -> str:
    """Load the encoder ``name`` (ConfigError if it does not); return it as it is stored.

    A local directory is stored as its absolute path, the packaged encoder by its name.
    """
    encoder = Encoder(name)
    _ = encoder.dim
    return name if encoder.key == DEFAULT_MODEL else encoder.key


__all__ = ["SETTINGS", "STAGES", "TRAIN_MODES", "Setting", "Settings", "Value", "parse"]
