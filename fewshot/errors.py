"""One hierarchy of errors a user can act on.

The CLI prints any :class:`FewshotError` as ``Error: <message>`` with exit code 1; anything
else is a bug and keeps its traceback. Messages say what was expected, what was found and
how to fix it; a problem in a file names the file and the line.
"""


class FewshotError(Exception):
    """Base class of every error a user can fix."""


class ConfigError(FewshotError):
    """A setting, option or model name is invalid."""


class DataError(FewshotError):
    """Input data (a file, a text, a label) is invalid."""


class ConflictError(DataError):
    """A text is given two labels: in one input, or against the label it has in the workspace."""


class WorkspaceError(FewshotError):
    """The workspace on disk is missing, unreadable or inconsistent."""


class BackendError(FewshotError):
    """An LLM backend failed or answered something unusable."""


class MissingExtraError(FewshotError):
    """An optional dependency is needed but not installed."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'fewshot[{extra}]'"
        )
