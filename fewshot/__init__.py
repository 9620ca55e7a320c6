"""fewshot: a few-shot text classifier that grows with its labels.

The heavy libraries (torch, sentence-transformers, setfit, faiss) are imported lazily by
the functions that need them, so importing this package and ``fewshot --help`` stay light.
"""

from fewshot.classifier import FewShotClassifier
from fewshot.errors import (
    BackendError,
    ConfigError,
    DataError,
    FewshotError,
    MissingExtraError,
    WorkspaceError,
)
from fewshot.values import Example, Neighbor, Prediction
from fewshot.workspace import Workspace

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "ConfigError",
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
