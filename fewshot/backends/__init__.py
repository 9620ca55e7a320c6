"""LLM backends: one small interface, implementations found through entry points.

See :mod:`fewshot.backends.base` for the interface and :mod:`fewshot.backends.openai` for the
built-in OpenAI-compatible client.
"""

from fewshot.backends.base import (
    Backend,
    Completion,
    LLMConfig,
    LLMFailure,
    LLMSettings,
    available,
    load,
    resolve,
)

__all__ = [
    "Backend",
    "Completion",
    "LLMConfig",
    "LLMFailure",
    "LLMSettings",
    "available",
    "load",
    "resolve",
]
