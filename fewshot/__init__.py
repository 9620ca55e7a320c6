"""fewshot: a few-shot text classifier that grows with its labels.

The heavy libraries (torch, sentence-transformers, setfit, faiss) are imported lazily by
the functions that need them, so importing this package and ``fewshot --help`` stay light.
"""

from typing import TYPE_CHECKING, Any

from fewshot.errors import (
    BackendError,
    ConfigError,
    ConflictError,
    DataError,
    FewshotError,
    MissingExtraError,
    WorkspaceError,
)
from fewshot.values import Example, Neighbor, Prediction

if TYPE_CHECKING:
    from fewshot.classifier import FewShotClassifier
    from fewshot.workspace import Workspace

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The API classes pull in numpy, FAISS's wrapper and scikit-learn: import them only when
    # asked for, so `fewshot --help` stays light.
    if name == "FewShotClassifier":
        from fewshot.classifier import FewShotClassifier

        return FewShotClassifier
    if name == "Workspace":
        from fewshot.workspace import Workspace

        return Workspace
    raise AttributeError(f"module 'fewshot' has no attribute {name!r}")


__all__ = [
    "BackendError",
    "ConfigError",
    "ConflictError",
    "DataError",
    "Example",
    "FewShotClassifier",
    "FewshotError",
    "MissingExtraError",
    "Neighbor",
    "Prediction",
    "Workspace",
    "WorkspaceError",
    "__version__",
]
