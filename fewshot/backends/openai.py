"""An OpenAI-compatible chat-completions client, on the standard library only.

One client serves every server that speaks the API: vLLM, Ollama, llama.cpp server,
LM Studio, OpenAI. ``llm_url`` may be the base URL (``http://localhost:11434/v1``) or the
full endpoint (``.../v1/chat/completions``); a URL with no path gets ``/v1``, where all of
those servers serve it. Requests use temperature 0, ask for logprobs (dropped for good if the
server rejects them with HTTP 400), time out after ``timeout`` seconds, and are retried a
bounded number of times on HTTP 429 and 5xx, waiting ``Retry-After`` or an exponential
backoff. A loopback server is reached without any configured proxy.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fewshot.backends.base import Completion, LLMConfig, LLMFailure, redact
from fewshot.errors import ConfigError

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_MAX_WAIT = 30.0


def base_url(url: str) -> str:
    """Return the API base URL (``.../v1``) for a base URL, a full endpoint, or a bare host.

    Raises:
        ConfigError: If ``url`` is not an http(s) URL.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = f"{parts.scheme}://{parts.hostname}" if parts.hostname else "a value without one"
        raise ConfigError(
            f"LLM URL: expected an http(s) URL such as http://localhost:11434/v1, found {shown}; "
            "pass --llm-url, set FEWSHOT_LLM_URL or `fewshot config llm_url URL`."
        )
    path = parts.path.rstrip("/").removesuffix("/chat/completions") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _url(base: str, route: str) -> str:
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, parts.path + route, parts.query, ""))


class OpenAIChatBackend:
    """A chat-completions client for any OpenAI-compatible server.

    Args:
        url: Base URL or endpoint (see the module docstring).
        model: Model name; None asks the server's ``GET /models`` and takes the first.
        api_key: Sent as ``Authorization: Bearer``; never shown in a message.
        timeout: Seconds to wait for one reply.
        max_retries: Retries after an HTTP 429 or 5xx.
        backoff: First wait between retries, doubled each time (``Retry-After`` wins).
        logprobs: Ask for token log-probabilities (used for the confidence).
    """

    def __init__(
        self,
        url: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        logprobs: bool = True,
    ) -> None:
        self.base = base_url(url)
        self._model = model
        self._key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.logprobs = logprobs
        self._lock = threading.Lock()
        loopback = urlsplit(self.base).hostname in _LOOPBACK
        handlers = [urllib.request.ProxyHandler({})] if loopback else []
        self._opener = urllib.request.build_opener(*handlers)

    @property
    def endpoint(self) -> str:
        """The chat-completions URL."""
        return _url(self.base, "/chat/completions")

    @property
    def model(self) -> str | None:
        """The model asked (None until the server was asked which it serves)."""
        return self._model

    def complete(self, messages: Sequence[Mapping[str, str]], max_tokens: int) -> Completion:
        """Send ``messages`` at temperature 0; return the reply and its token logprobs.

        Raises:
            LLMFailure: See :class:`~fewshot.backends.base.LLMFailure` for the reasons.
        """
        body: dict[str, Any] = {
            "model": self._model or self._first_model(),
            "messages": [dict(m) for m in messages],
            "temperature": 0,
            "max_tokens": max_tokens,
        }
        if self.logprobs:
            body["logprobs"] = True
        try:
            reply = self._with_retries("POST", self.endpoint, body)
        except LLMFailure as failure:
            if failure.reason != "http 400" or "logprobs" not in body:
                raise
            self.logprobs = False  # this server rejects logprobs; stop asking
            del body["logprobs"]
            reply = self._with_retries("POST", self.endpoint, body)
        return _completion(reply, self.endpoint)

    def models(self) -> list[str]:
        """Return the model ids the server lists (``GET /models``)."""
        url = _url(self.base, "/models")
        reply = self._with_retries("GET", url, None)
        try:
            return [str(m["id"]) for m in reply["data"]]
        except (KeyError, TypeError) as err:
            raise LLMFailure("invalid response", f"{url}: not a model list.") from err

    def _first_model(self) -> str:
        with self._lock:
            if self._model is None:
                names = self.models()
                if not names:
                    raise LLMFailure(
                        "no model", f"{self.base}: the server lists no model; set llm_model."
                    )
                self._model = names[0]
            return self._model

    def _with_retries(self, method: str, url: str, body: dict[str, Any] | None) -> Any:
        delay = self.backoff
        for attempt in range(self.max_retries + 1):
            try:
                return self._request(method, url, body)
            except _Retryable as err:
                if attempt == self.max_retries:
                    raise err.failure from None
                time.sleep(
                    min(err.retry_after if err.retry_after is not None else delay, _MAX_WAIT)
                )
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, method: str, url: str, body: dict[str, Any] | None) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            raise self._http_error(err, url) from None
        except urllib.error.URLError as err:
            raise self._failure(err.reason, url) from None
        except (TimeoutError, OSError) as err:
            raise self._failure(err, url) from None
        try:
            return json.loads(raw)
        except ValueError as err:
            raise LLMFailure("invalid response", f"{url}: the reply is not JSON.") from err

    def _http_error(self, err: urllib.error.HTTPError, url: str) -> Exception:
        try:
            detail = redact(err.read(300).decode("utf-8", "replace"), self._key)
        except OSError:  # the body could not be read; the status says enough
            detail = ""
        failure = LLMFailure(f"http {err.code}", f"{url}: HTTP {err.code} {detail}".strip())
        if err.code == 429 or err.code >= 500:
            return _Retryable(failure, _seconds(err.headers.get("Retry-After")))
        return failure

    def _failure(self, reason: object, url: str) -> LLMFailure:
        if isinstance(reason, TimeoutError):
            return LLMFailure("timeout", f"{url}: no reply within {self.timeout:g} s.")
        if isinstance(reason, ConnectionRefusedError):
            return LLMFailure("connection refused", f"{url}: connection refused; is it running?")
        text = redact(str(reason), self._key)
        return LLMFailure("connection error", f"{url}: {text}")


class _Retryable(Exception):
    def __init__(self, failure: LLMFailure, retry_after: float | None) -> None:
        super().__init__(str(failure))
        self.failure = failure
        self.retry_after = retry_after


def _seconds(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None  # an HTTP date: use the backoff instead


def _completion(reply: Any, url: str) -> Completion:
    try:
        choice = reply["choices"][0]
        content = choice["message"].get("content") or ""
        tokens = (choice.get("logprobs") or {}).get("content")
        logprobs = tuple(float(t["logprob"]) for t in tokens) if tokens else None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
        raise LLMFailure("invalid response", f"{url}: not a chat completion.") from err
    if not isinstance(content, str):
        raise LLMFailure("invalid response", f"{url}: the message content is not text.")
    return Completion(content, logprobs)


def from_config(config: LLMConfig) -> OpenAIChatBackend:
    """Return a client for ``config`` (the ``openai`` entry point)."""
    return OpenAIChatBackend(
        config.url,
        model=config.model,
        api_key=config.api_key,
        timeout=config.timeout,
        max_retries=config.max_retries,
        logprobs=config.logprobs,
    )


def check_url(url: str) -> None:
    """Refuse a URL this backend cannot use (found by :func:`fewshot.backends.base.check_url`).

    Raises:
        ConfigError: If ``url`` is not an http(s) URL.
    """
    base_url(url)
