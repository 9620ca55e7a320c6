"""The one small interface every LLM backend implements, and where its settings come from.

A backend is found by name under the entry point group ``fewshot.backends``; the value of
the entry point is a factory ``(LLMConfig) -> Backend``. The built-in ``openai`` backend is
registered exactly the way a third-party package would register its own::

    [project.entry-points."fewshot.backends"]
    mybackend = "mypackage.module:from_config"

Settings come from, highest first: the explicit :class:`LLMSettings` (the CLI's options),
the environment (``FEWSHOT_LLM_URL``, ``FEWSHOT_LLM_MODEL``), the workspace settings
(``llm_url``, ``llm_model``...). The API key comes only from ``FEWSHOT_LLM_API_KEY`` or
``OPENAI_API_KEY``: it is never stored, and :func:`redact` removes it from every message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol

from fewshot.errors import BackendError, ConfigError

GROUP = "fewshot.backends"
URL_ENV = "FEWSHOT_LLM_URL"
MODEL_ENV = "FEWSHOT_LLM_MODEL"
KEY_ENVS = ("FEWSHOT_LLM_API_KEY", "OPENAI_API_KEY")
DEFAULT_BACKEND = "openai"
DEFAULT_TIMEOUT = 60.0
DEFAULT_CONCURRENCY = 4
DEFAULT_RETRIES = 2


@dataclass(frozen=True)
class LLMSettings:
    """Explicit LLM settings; a field left None comes from the environment or the workspace.

    Args:
        url: The server's base URL (``http://localhost:11434/v1``) or its chat endpoint.
        model: The model name the server knows.
        backend: The backend's entry point name (default ``openai``).
        timeout: Seconds to wait for one reply.
        concurrency: Requests in flight at once for a batch.
    """

    url: str | None = None
    model: str | None = None
    backend: str | None = None
    timeout: float | None = None
    concurrency: int | None = None


@dataclass(frozen=True)
class LLMConfig:
    """Resolved LLM settings, ready for a backend. The key never shows in a repr."""

    url: str
    model: str | None = None
    backend: str = DEFAULT_BACKEND
    timeout: float = DEFAULT_TIMEOUT
    concurrency: int = DEFAULT_CONCURRENCY
    max_retries: int = DEFAULT_RETRIES
    logprobs: bool = True
    api_key: str | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Completion:
    """A backend's reply: the text, and each generated token's log-probability if returned."""

    text: str
    logprobs: tuple[float, ...] | None = None


class LLMFailure(BackendError):
    """A request failed; ``reason`` is the short fallback reason a record carries.

    Reasons: ``timeout``, ``http <status>``, ``connection refused``, ``connection error``,
    ``invalid response``, ``no model``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Backend(Protocol):
    """What the LLM stage needs from a backend. ``complete`` must be thread-safe."""

    @property
    def endpoint(self) -> str:
        """Where requests go, for people (no secrets)."""

    @property
    def model(self) -> str | None:
        """The model asked, or None when the server picks."""

    def complete(self, messages: Sequence[Mapping[str, str]], max_tokens: int) -> Completion:
        """Send chat ``messages`` at temperature 0 and return the reply.

        Raises:
            LLMFailure: On a timeout, an HTTP error, a refused connection or a bad reply.
        """


def check_url(url: str, backend: str = DEFAULT_BACKEND) -> None:
    """Let the backend named ``backend`` check ``url`` before it is stored.

    A backend's module may define ``check_url(url)``, raising :class:`ConfigError` for a
    URL it cannot use; a backend without one accepts any URL, and an unknown backend is
    reported when it is loaded.
    """
    import importlib

    for ep in entry_points(group=GROUP):
        if ep.name == backend:
            checker = getattr(importlib.import_module(ep.module), "check_url", None)
            if callable(checker):
                checker(url)
            return


def api_key(environ: Mapping[str, str] | None = None) -> str | None:
    """Return the API key from ``FEWSHOT_LLM_API_KEY`` or ``OPENAI_API_KEY`` (else None)."""
    env = os.environ if environ is None else environ
    return next((env[name] for name in KEY_ENVS if env.get(name)), None)


def resolve(
    given: LLMSettings | None,
    stored: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> LLMConfig | None:
    """Return the LLM configuration, or None when no URL is set anywhere.

    Args:
        given: Explicit settings (highest precedence), or None.
        stored: The workspace settings.
        environ: The environment (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    given = given or LLMSettings()
    url = given.url or env.get(URL_ENV) or stored.get("llm_url")
    if not url:
        return None
    timeout = given.timeout or stored.get("llm_timeout") or DEFAULT_TIMEOUT
    concurrency = given.concurrency or stored.get("llm_concurrency") or DEFAULT_CONCURRENCY
    return LLMConfig(
        url=str(url),
        model=given.model or env.get(MODEL_ENV) or stored.get("llm_model") or None,
        backend=str(given.backend or stored.get("llm_backend") or DEFAULT_BACKEND),
        timeout=float(timeout),
        concurrency=int(concurrency),
        api_key=api_key(env),
    )


def available() -> list[str]:
    """Return the names of the installed backends."""
    return sorted(ep.name for ep in entry_points(group=GROUP))


def load(config: LLMConfig) -> Backend:
    """Create the backend named by ``config.backend`` through its entry point.

    Raises:
        ConfigError: If no backend of that name is installed.
    """
    found = [ep for ep in entry_points(group=GROUP) if ep.name == config.backend]
    if not found:
        names = ", ".join(available()) or "none"
        raise ConfigError(
            f"LLM backend '{config.backend}': no backend of that name is installed "
            f"(installed: {names}). Backends register under the entry point group '{GROUP}'; "
            "if 'openai' is missing, reinstall fewshot (pip install -e .)."
        )
    factory: Callable[[LLMConfig], Backend] = found[0].load()
    return factory(config)


def redact(message: str, key: str | None) -> str:
    """Return ``message`` with the API key (if any) replaced by ``***``."""
    return message.replace(key, "***") if key else message
