"""The ``ClipperError`` hierarchy.

Every error raised on purpose by Clipper derives from :class:`ClipperError`. Errors carry the
data they are about and the HTTP status the frontends answer with, so that
``frontend`` is the only place that turns them into responses. ``ClipperException`` (the
name the original ``clipper_admin`` exported) is the same class.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import ClassVar


class ClipperError(Exception):
    """A problem Clipper noticed; the message says what was wrong and what to do."""

    status: ClassVar[HTTPStatus] = HTTPStatus.BAD_REQUEST

    def __init__(self, msg: str, *args: object) -> None:
        super().__init__(msg, *args)
        self.msg = msg

    def __str__(self) -> str:
        return self.msg


#: The name the seeds' API documents (``clipper_admin.ClipperException``).
ClipperException = ClipperError


class UnconnectedException(ClipperError):
    """A ClipperConnection must be connected to a cluster to issue this command."""

    def __init__(self, *args: object) -> None:
        super().__init__(
            "No connection to Clipper cluster. Call ClipperConnection.connect to "
            "connect to an existing cluster or ClipperConnection.start_clipper to "
            "create a new one",
            *args,
        )


class ValidationError(ClipperError, ValueError):
    """Input that does not have the expected shape or type (HTTP 400)."""


class NotFoundError(ClipperError, LookupError):
    """A named application, model, version or replica does not exist (HTTP 404)."""

    status = HTTPStatus.NOT_FOUND


class ConflictError(ClipperError):
    """The request clashes with existing state, e.g. a duplicate name (HTTP 400, as Clipper)."""


class PayloadTooLargeError(ClipperError):
    """A request body above the configured limit (HTTP 413)."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class UnauthorizedError(ClipperError):
    """The management API requires a token and the request had none or a wrong one."""

    status = HTTPStatus.UNAUTHORIZED


class OverloadedError(ClipperError):
    """The frontend sheds load: a queue is full (HTTP 503 with Retry-After)."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class StorageError(ClipperError):
    """The state store cannot write (a full disk, an I/O error): HTTP 507, nothing changed."""

    status = HTTPStatus.INSUFFICIENT_STORAGE


class PluginError(ClipperError):
    """A plugin is missing, clashes with another one, or failed while loading."""


class DeployError(ClipperError):
    """A model could not be saved, built or started."""


class BackendError(ClipperError):
    """A container backend (local processes, Docker, Kubernetes) failed."""
