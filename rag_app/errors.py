"""The error hierarchy: one base class, a few subclasses, translated at the edges.

The CLI turns a :class:`RagAppError` into one line on stderr and a non-zero exit code;
the REST API into a 4xx/5xx JSON body. Library code never swallows one silently.
"""

from __future__ import annotations


class RagAppError(Exception):
    """Base class of every error this project raises on purpose."""

    exit_code = 1


class ConfigError(RagAppError):
    """A setting has a value that is not allowed; the message names the key to change."""

    exit_code = 2


class ModelNotFoundError(RagAppError):
    """A model could not be resolved to local files (and the network is not allowed)."""


class DocumentError(RagAppError):
    """A single document could not be loaded: broken, encrypted, unsupported or unreadable."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class UnsupportedFormatError(DocumentError):
    """No loader handles this kind of file."""


class IndexNotFoundError(RagAppError):
    """The index folder does not exist or holds no index."""


class IndexMismatchError(RagAppError):
    """The index was built with another embedding model, dimension or schema version."""


class IndexLockedError(RagAppError):
    """Another process is writing to the same index."""


class StoreUnavailableError(RagAppError):
    """An external store (a Milvus server) could not be reached or refused a request."""


class IngestError(RagAppError):
    """Nothing at all could be ingested from the given paths."""


class QueryError(RagAppError):
    """A question or search request that cannot be answered as given (empty, bad filter)."""

    exit_code = 2


class GeneratorError(RagAppError):
    """The generator failed: its server is down, timed out or answered badly, or decoding broke.

    The message names the server's URL (or the model) and the setting to change.
    """
