"""Frozen value objects shared by every area: input types, applications, model versions, replicas."""

from __future__ import annotations

import enum
import re

import attrs

from clipper_core.exceptions import ValidationError

#: Marker image of a model registered without containers (``register_model`` without image).
CONTAINERLESS_MODEL_IMAGE = "NO_CONTAINER"

#: Batch size meaning "let Clipper choose adaptively".
ADAPTIVE_BATCH_SIZE = -1

_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_FORBIDDEN = (",", ":")


class InputType(enum.IntEnum):
    """The five input types; the integer value is the RPC wire code (spec §2, §4.1)."""

    BYTES = 0
    INTEGERS = 1
    FLOATS = 2
    DOUBLES = 3
    STRINGS = 4

    @classmethod
    def parse(cls, name: object) -> InputType:
        """Return the type named ``name`` (canonical name or one of Clipper's aliases)."""
        if isinstance(name, InputType):
            return name
        found = _ALIASES.get(name.strip().lower()) if isinstance(name, str) else None
        if found is None:
            msg = (
                f"{name!r} is not a valid input type. Expected one of: "
                "integers, floats, doubles, bytes, strings"
            )
            raise ValidationError(msg)
        return found

    @property
    def canonical(self) -> str:
        """The name Clipper stores and returns: ``bytes``, ``integers``, ``floats``..."""
        return self.name.lower()

    @property
    def numpy_dtype(self) -> str:
        """The dtype a model receives its inputs in (spec §4.5); strings arrive as bytes objects."""
        return _NUMPY_DTYPES[self]

    @property
    def is_numeric_array(self) -> bool:
        """True for integers, floats and doubles (inputs are JSON arrays of numbers)."""
        return self in (InputType.INTEGERS, InputType.FLOATS, InputType.DOUBLES)


_ALIASES = {
    **dict.fromkeys(("bytes", "byte", "b"), InputType.BYTES),
    **dict.fromkeys(("integers", "ints", "integer", "int", "i"), InputType.INTEGERS),
    **dict.fromkeys(("floats", "float", "f"), InputType.FLOATS),
    **dict.fromkeys(("doubles", "double", "d"), InputType.DOUBLES),
    **dict.fromkeys(("strings", "string", "str", "strs", "s"), InputType.STRINGS),
}
_NUMPY_DTYPES = {
    InputType.BYTES: "int8",
    InputType.INTEGERS: "int32",
    InputType.FLOATS: "float32",
    InputType.DOUBLES: "float64",
    InputType.STRINGS: "object",
}


def validate_dns1123(value: str, what: str) -> str:
    """Check a model name or version the way ``clipper_admin`` always did (spec §2.4)."""
    if not _DNS1123.match(value):
        msg = (
            f"Invalid value: {value}: a {what} must be a valid DNS-1123 subdomain. It must "
            "consist of lower case alphanumeric characters or '-', and must start and end "
            "with an alphanumeric character (e.g. 'example-1', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?\\Z')"
        )
        raise ValidationError(msg)
    return value


_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")


def is_safe_name(value: str) -> bool:
    """Whether ``value`` follows the rule of :func:`validate_name`."""
    return _SAFE_NAME.match(value) is not None


def validate_name(value: object, what: str) -> str:
    """Check a name stored by the management API (application, model, version, label).

    A name becomes part of URLs (``/<app>/predict``) and of paths in the cluster directory, so
    it is 1 to 128 letters, digits, ``_``, ``.`` or ``-``, starting with a letter, digit or
    ``_``: no ``..``, ``/``, spaces, ``,``, ``:`` or URL characters such as ``%#?``.
    """
    if not isinstance(value, str) or not value.strip():
        msg = f"Invalid {what} supplied: {value!r}. Expected a non-empty string"
        raise ValidationError(msg)
    if not is_safe_name(value):
        msg = (
            f"Invalid {what} supplied: {value!r}. A {what} must be 1 to 128 letters, digits, "
            "'_', '.' or '-', starting with a letter, digit or '_' (regex "
            "'[A-Za-z0-9_][A-Za-z0-9._-]{0,127}'); it must not contain ',', ':', '/', spaces "
            "or characters such as '%', '#', '?'"
        )
        raise ValidationError(msg)
    return value


@attrs.frozen
class Application:
    """A named REST endpoint ``/<name>/predict`` with an input type, an SLO and a default output."""

    name: str
    input_type: InputType
    default_output: str
    latency_slo_micros: int
    policy: str = "default"
    #: The selection policy's parameters, as a JSON object (``set_selection_policy``).
    policy_params: str = "{}"


@attrs.frozen
class ModelVersion:
    """One registered version of a model; ``image`` is what its replicas run."""

    name: str
    version: str
    input_type: InputType
    labels: tuple[str, ...] = ()
    image: str = CONTAINERLESS_MODEL_IMAGE
    batch_size: int = ADAPTIVE_BATCH_SIZE
    model_data_path: str = "DEPRECATED"

    @property
    def key(self) -> str:
        """``name:version``, the id Clipper prints and the management API accepts."""
        return f"{self.name}:{self.version}"

    @property
    def has_containers(self) -> bool:
        return self.image != CONTAINERLESS_MODEL_IMAGE


@attrs.frozen
class Replica:
    """A model container connected to a query frontend over RPC."""

    model_name: str
    model_version: str
    replica_id: int
    input_type: InputType
    #: Which query frontend the replica is connected to (several may share one store).
    frontend_id: str = ""

    def __str__(self) -> str:
        """``model:version#id``, as the logs name a replica."""
        return f"{self.model_name}:{self.model_version}#{self.replica_id}"
