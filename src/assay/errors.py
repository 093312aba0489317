"""The exceptions assay raises.

Every error is an ``AssayError``; catch that to handle them all. Where callers expect a builtin,
the subclass also derives from it::

    AssayError
    ├── NotARepository(AssayError, FileNotFoundError)
    ├── RepositoryExists(AssayError, FileExistsError)
    ├── FormatError(AssayError, ValueError)            stored format newer than this assay
    ├── ObjectNotFound(AssayError, KeyError)
    ├── CorruptObject(AssayError, ValueError)          bytes do not match their address
    ├── CatalogDamaged(AssayError)                     the catalog database (refs) cannot be read
    ├── CatalogUnavailable(AssayError, ConnectionError) the catalog's server refused or cannot be reached
    ├── RefNotFound(AssayError, KeyError)              branch, tag, commit or dataset unknown
    │   └── ModelNotFound                               model, version or alias unknown
    ├── RefExists(AssayError, ValueError)
    ├── InputError(AssayError, ValueError)             bad user input: files, frames, arguments
    │   ├── SchemaConflict                              schema does not fit the dataset
    │   ├── KeyViolation                                duplicate or null keys
    │   ├── ParamError(InputError, TypeError)           a parameter of an expectation, screen or policy
    │   ├── ScreenError                                 data a screen cannot score (no labels, one class)
    │   ├── SuiteError                                  a suite (file or object) that cannot be used
    │   ├── PolicyError                                 a gate policy file that cannot be read
    │   ├── BodyInvalid                                 a served request body that does not fit the signature (422)
    │   ├── BodyTooLarge                                a served request body over the limit (413)
    │   ├── NotServable                                 a model version that cannot be served (not ONNX)
    │   ├── SQLConditionError                           user SQL that is not one expression over the data
    │   ├── RulesError                                  an alert rules file that cannot be used (names its line)
    │   ├── NothingToIngest                             no (labelled) production rows to take into a dataset
    │   └── ModelError                                  a model the registry cannot take; nothing registered
    │       ├── UnsupportedModel(ModelError, TypeError)  not a scikit-learn, PyTorch or ONNX model
    │       ├── SignatureMismatch                       inputs that do not fit the data it claims
    │       └── ModelFileError                          a model file that cannot be read (corrupt ONNX)
    ├── KeyRefused(AssayError, PermissionError)        a served request without a valid API key (401, 403)
    ├── ConflictError(AssayError, RuntimeError)        a ref moved under a writer
    │   ├── NonFastForward                              a push whose remote branch holds commits it lacks
    │   └── LockHeld                                    a catalog lock (gc's) held elsewhere until it expires
    ├── MergeConflict(AssayError)                      samples changed differently on both sides
    ├── CheckFailed(AssayError)                        a commit or merge refused by a dataset's suite
    ├── BatchRejected(AssayError)                      an ingested batch refused as a whole by the gate
    ├── NothingToCommit(AssayError)
    ├── ContractError(AssayError, AssertionError)      a screen (or other plug-in) broke its contract
    ├── OutOfSpace(AssayError, OSError)                the filesystem filled up during a write; nothing changed
    ├── MissingExtra(AssayError, ImportError)          onnx, onnxruntime, skl2onnx or torch not installed
    ├── ExportMismatch(AssayError, ValueError)         an ONNX export whose outputs differ from the original
    ├── QuantizationRefused(AssayError)                INT8 over its accuracy budget after every remedy
    ├── StorageError(AssayError)                       object storage (S3) refused a request or cannot be reached
    │   ├── BucketNotFound                              the bucket does not exist
    │   ├── StorageAccessDenied                         no, wrong or insufficient credentials
    │   └── StorageUnreachable                          the endpoint does not connect or answer
    ├── EngineError(AssayError, RuntimeError)          a distributed engine's task or cluster failed (a worker died)
    └── NotPortable(AssayError, TypeError)             a store without a URL (in memory) asked to go to another process

Messages say what happened, why, and what to do. Every exception class of assay is defined here
(``tests/test_layers.py`` checks it); other modules import them from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class AssayError(Exception):
    """Root of all assay errors."""

    def __str__(self) -> str:  # KeyError would repr() its argument
        return str(self.args[0]) if self.args else self.__class__.__name__


class NotARepository(AssayError, FileNotFoundError):
    """No ``.assay`` folder where one was expected."""


class RepositoryExists(AssayError, FileExistsError):
    """``init`` on a folder that already holds a repository."""


class FormatError(AssayError, ValueError):
    """A stored object or config has a format this version cannot read."""


class ObjectNotFound(AssayError, KeyError):
    """An object address that the store does not hold."""


class CorruptObject(AssayError, ValueError):
    """Stored bytes whose hash does not match their address."""


class CatalogDamaged(AssayError):
    """The catalog database is damaged (truncated, malformed, not a database); ``path`` names it.

    ``assay fsck --rebuild-catalog`` rebuilds the refs from the commits in the object store.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class CatalogUnavailable(AssayError, ConnectionError):
    """The catalog's database server cannot be reached, or refused the connection (user, password)."""


class RefNotFound(AssayError, KeyError):
    """A branch, tag, commit, revision or dataset that does not exist."""


class RefExists(AssayError, ValueError):
    """A branch or tag that already exists."""


class InputError(AssayError, ValueError):
    """Input that assay cannot accept; nothing was written."""


class SchemaConflict(InputError):
    """Input whose schema does not fit the dataset's."""


class KeyViolation(InputError):
    """Duplicate or null sample keys."""


class ParamError(InputError, TypeError):
    """A parameter (of an expectation, a screen, a policy) that is unknown, missing, of the wrong type or out of
    its bounds (see ``assay._params``). A TypeError too, as Python raises for a wrong keyword."""


class SuiteError(InputError):
    """A suite that cannot be used: invalid YAML, an unknown expectation or argument (the message names the
    line), or an expectation built in code whose arguments do not fit."""


class ScreenError(InputError):
    """Data that a screen cannot score: missing labels, one class, too few samples."""


class PolicyError(InputError):
    """A gate policy file that cannot be read: invalid YAML, an unknown screen, an invalid threshold."""


class SQLConditionError(InputError):
    """A user's SQL condition (a suite's ``sql`` expectation, ``scores --where``) that is not one expression over
    the columns of the data: a second statement, a comment, a subquery, a table or file function."""


class ModelNotFound(RefNotFound):
    """A model name, version number or alias that the registry does not hold."""


class ModelError(InputError):
    """A model (or its lineage) that the registry cannot take; nothing was registered."""


class UnsupportedModel(ModelError, TypeError):
    """An object that is not a model of a supported framework (or whose framework is not installed)."""


class SignatureMismatch(ModelError):
    """A model whose inputs do not match the columns of the dataset it claims, or an evaluation version
    without the label column."""


class ModelFileError(ModelError):
    """A model file that cannot be read: a corrupt or truncated ONNX file, a pickle that does not load."""


class ConflictError(AssayError, RuntimeError):
    """A ref moved between reading and updating it."""


class NonFastForward(ConflictError):
    """A push refused: the remote branch holds commits the pushed branch does not contain."""


class NothingToCommit(AssayError):
    """``commit`` with nothing staged."""


class ContractError(AssayError, AssertionError):
    """A screen (or another plug-in) broke its contract, e.g. scored a different number of samples than it was
    given: a bug in that plug-in, which the message names. Nothing was stored."""


class MergeConflict(AssayError):
    """Samples changed differently on both sides of a merge."""

    def __init__(self, message: str, conflicts: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.conflicts = list(conflicts)


class CheckFailed(AssayError):
    """A commit (or merge) refused because its data fails its suite; ``results`` holds the check results."""

    def __init__(self, message: str, results: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.results = dict(results or {})


class BatchRejected(AssayError):
    """A batch that the gate refused as a whole; ``report`` holds the ingest report."""

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class OutOfSpace(AssayError, OSError):
    """A write found its filesystem (or the user's quota) full; the write left nothing behind."""

    def __str__(self) -> str:
        return self.strerror or "no space left on device"


class LockHeld(ConflictError):
    """A catalog lock (e.g. gc's) held by another process until it expires; ``owner`` and ``expires`` say whose."""

    def __init__(self, message: str, owner: str = "", expires: float = 0.0) -> None:
        super().__init__(message)
        self.owner = owner
        self.expires = expires


class MissingExtra(AssayError, ImportError):
    """An optional dependency (onnx, onnxruntime, skl2onnx, torch) that a model operation needs is not installed."""


class ExportMismatch(AssayError, ValueError):
    """An ONNX export whose outputs differ from the original model's; ``verification`` holds the figures."""

    def __init__(self, message: str, verification: Any = None) -> None:
        super().__init__(message)
        self.verification = verification


class QuantizationRefused(AssayError):
    """INT8 quantisation over its accuracy budget after every remedy; ``report`` holds fp32 and INT8 metrics."""

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = dict(report or {})


class StorageError(AssayError):
    """Object storage refused a request, or could not be reached; nothing was written by the failed call."""


class BucketNotFound(StorageError):
    """A bucket that does not exist (or that the endpoint does not serve)."""


class StorageAccessDenied(StorageError):
    """Credentials missing, unknown (InvalidAccessKeyId), wrong (SignatureDoesNotMatch) or not allowed to do it."""


class StorageUnreachable(StorageError):
    """An object storage endpoint that does not connect or does not answer (after the client's retries)."""


class BodyTooLarge(InputError):
    """A request body over the server's limit (413)."""


class NotServable(InputError):
    """A model version that cannot be served: not ONNX, or no signature."""


class KeyRefused(AssayError, PermissionError):
    """A request whose key is missing (``status`` 401), unknown, revoked or for another model (403)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class BodyInvalid(InputError):
    """A request body that does not fit the model's signature; ``errors`` lists each problem with its field."""

    def __init__(self, message: str, errors: list[dict[str, Any]]):
        super().__init__(message)
        self.errors = errors


class RulesError(InputError):
    """An alert rules file (``assay monitor run --rules``) that cannot be used: the message names its line."""


class NothingToIngest(InputError):
    """``assay ingest predictions/NAME``: no production rows in the window, or none of them labelled yet."""


class EngineError(AssayError, RuntimeError):
    """A task of a distributed engine (Ray) that failed without an assay error: the cluster cannot be reached, a
    worker died, or the task's exception cannot be sent back (its class and message are kept in the text)."""


class NotPortable(AssayError, TypeError):
    """An object store without a URL (in memory) pickled to go to another process (a Ray worker): it would be a
    silent copy, so it is refused; open the store from a URL (``file://``, ``s3://``)."""
