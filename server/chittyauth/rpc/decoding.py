"""Request bodies: decoded by ChittyAuth, not by grpc, and well-known types range-checked.

grpc's own deserializer runs before any of our code, so a body that does not parse left as
UNKNOWN "Unexpected DecodeError" with a traceback in the log for every such call: a log flood
anyone can cause. Handlers are therefore registered with no deserializer (grpc hands over the
raw bytes) and the handler wrapper decodes with the generated ``FromString`` (the same call
grpc would have made, at the same cost), so a bad body is an ordinary refusal:
INVALID_ARGUMENT ``MALFORMED_REQUEST``, logged once at INFO.

A body that parses can still carry values its types forbid: a ``Timestamp`` outside
0001-01-01..9999-12-31, a ``Duration`` beyond ±10,000 years or with nanos of the wrong sign,
NaN or ±Infinity in a ``Struct``/``Value`` (JSON has no such numbers). The checker for a request
type is built once from its descriptor and visits only the fields that can hold one of those;
a type with none (Validate's, most of them) gets no checker at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from chittyauth.domain.errors import InvalidRequest

# google/protobuf/timestamp.proto: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
# google/protobuf/duration.proto: about ±10,000 years.
MAX_DURATION_SECONDS = 315_576_000_000
MAX_NANOS = 999_999_999
_MAX_TEXT = 256

TIMESTAMP = "google.protobuf.Timestamp"
DURATION = "google.protobuf.Duration"
STRUCT = "google.protobuf.Struct"
VALUE = "google.protobuf.Value"
LIST_VALUE = "google.protobuf.ListValue"
_CHECKED_TYPES = frozenset({TIMESTAMP, DURATION, STRUCT, VALUE, LIST_VALUE})

Decoder = Callable[[bytes], Any]
# Raises InvalidRequest naming the field (dotted path) whose value is out of range.
Checker = Callable[[Message, str], None]


class MalformedRequest(InvalidRequest):
    """The request body is not a valid message of the method's request type."""

    reason = "MALFORMED_REQUEST"


class OutOfRangeValue(InvalidRequest):
    """A well-known type holds a value its definition forbids."""

    def __init__(self, message: str, *, reason: str, field: str) -> None:
        # Struct keys are the caller's: bounded, so the refusal always fits in the trailers.
        super().__init__(message[:_MAX_TEXT], reason=reason, metadata={"field": field[:_MAX_TEXT]})


def decoder_for(deserializer: Callable[[bytes], Any] | None) -> Decoder | None:
    """The decoding the wrapper does for a handler whose grpc deserializer was ``deserializer``.

    None when there is nothing to decode (a handler that takes raw bytes). A generated
    ``Message.FromString`` gets the well-known-type check of its type; any other callable is
    used as it is, its errors refused as malformed.
    """
    if deserializer is None:
        return None
    message_class = getattr(deserializer, "__self__", None)
    if isinstance(message_class, type) and issubclass(message_class, Message):
        descriptor = cast(Descriptor, message_class.DESCRIPTOR)  # the upb class is the same
        return _decoder(deserializer, descriptor.name, checker_for(descriptor))
    return _decoder(deserializer, "request", None)


def _decoder(parse: Callable[[bytes], Any], type_name: str, check: Checker | None) -> Decoder:
    refusal = f"the request body is not a valid {type_name}"

    def decode(body: bytes) -> Any:
        try:
            message = parse(body)
        except (DecodeError, ValueError, TypeError, RecursionError):
            raise MalformedRequest(refusal) from None
        if check is not None:
            check(message, "")
        return message

    return decode


# -- well-known types ------------------------------------------------------------------------


def checker_for(descriptor: Descriptor) -> Checker | None:
    """A range check of every well-known value ``descriptor``'s messages can hold; None if none."""
    return _Checkers().build(descriptor)


class _Checkers:
    """Builds checkers for a type graph once; recursive types share their checker."""

    def __init__(self) -> None:
        self._built: dict[str, Checker | None] = {}
        self._reachable: dict[str, bool] = {}

    def build(self, descriptor: Descriptor) -> Checker | None:
        name = descriptor.full_name
        if name in self._built:
            return self._built[name]
        special = _SPECIAL.get(name)
        if special is not None:
            self._built[name] = special
            return special
        if not self._holds_checked(descriptor, set()):
            self._built[name] = None
            return None
        fields: list[tuple[FieldDescriptor, Checker]] = []

        def check(message: Message, path: str) -> None:
            for field, inner in fields:
                _check_field(message, field, inner, path)

        # Registered before its fields are built, so a field of its own type finds it.
        self._built[name] = check
        for field in descriptor.fields:
            if field.message_type is None:
                continue
            if _is_map(field):
                value_field = field.message_type.fields_by_name["value"]
                if value_field.message_type is None:
                    continue
                inner = self.build(value_field.message_type)
            else:
                inner = self.build(field.message_type)
            if inner is not None:
                fields.append((field, inner))
        return check

    def _holds_checked(self, descriptor: Descriptor, visiting: set[str]) -> bool:
        name = descriptor.full_name
        if name in self._reachable:
            return self._reachable[name]
        if name in _CHECKED_TYPES:
            return True
        if name in visiting:
            return False
        visiting.add(name)
        holds = any(
            field.message_type is not None and self._holds_checked(field.message_type, visiting)
            for field in descriptor.fields
        )
        visiting.discard(name)
        # A "no" found inside a cycle may only mean "not by this way round": keep it only at
        # the top of the walk, where every way round has been tried.
        if holds or not visiting:
            self._reachable[name] = holds
        return holds


def _is_map(field: FieldDescriptor) -> bool:
    message_type = field.message_type
    return message_type is not None and message_type.GetOptions().map_entry


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _check_field(message: Message, field: FieldDescriptor, check: Checker, path: str) -> None:
    name = field.name
    if _is_map(field):
        for key, value in getattr(message, name).items():
            check(value, f"{_join(path, name)}[{key}]")
    elif field.is_repeated:
        for index, item in enumerate(getattr(message, name)):
            check(item, f"{_join(path, name)}[{index}]")
    elif message.HasField(name):
        check(getattr(message, name), _join(path, name))


def _check_timestamp(message: Message, path: str) -> None:
    seconds, nanos = message.seconds, message.nanos  # type: ignore[attr-defined]
    if not (MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS and 0 <= nanos <= MAX_NANOS):
        raise OutOfRangeValue(
            f"{path or 'timestamp'} must be between 0001-01-01 and 9999-12-31 "
            "with nanos in 0..999999999",
            reason="TIMESTAMP_OUT_OF_RANGE",
            field=path,
        )


def _check_duration(message: Message, path: str) -> None:
    seconds, nanos = message.seconds, message.nanos  # type: ignore[attr-defined]
    if (
        abs(seconds) > MAX_DURATION_SECONDS
        or abs(nanos) > MAX_NANOS
        or (seconds > 0 and nanos < 0)
        or (seconds < 0 and nanos > 0)
    ):
        raise OutOfRangeValue(
            f"{path or 'duration'} must be within ±315576000000 s, "
            "its nanos of the same sign and below one second",
            reason="DURATION_OUT_OF_RANGE",
            field=path,
        )


def _check_value(message: Message, path: str) -> None:
    for value, where in _numbers(message, path):
        if not math.isfinite(value):
            raise OutOfRangeValue(
                f"{where or 'value'} must be a finite number (JSON has no NaN or Infinity)",
                reason="NUMBER_NOT_FINITE",
                field=where,
            )


def _numbers(message: Any, path: str) -> Iterator[tuple[float, str]]:
    """Every number of a Struct, Value or ListValue with its path; iterative, any depth."""
    pending: list[tuple[Any, str]] = [(message, path)]
    while pending:
        item, where = pending.pop()
        kind = item.DESCRIPTOR.full_name
        if kind == STRUCT:
            pending.extend((value, _join(where, key)) for key, value in item.fields.items())
        elif kind == LIST_VALUE:
            pending.extend((value, f"{where}[{i}]") for i, value in enumerate(item.values))
        else:
            which = item.WhichOneof("kind")
            if which == "number_value":
                yield item.number_value, where
            elif which == "struct_value":
                pending.append((item.struct_value, where))
            elif which == "list_value":
                pending.append((item.list_value, where))


_SPECIAL: dict[str, Checker] = {
    TIMESTAMP: _check_timestamp,
    DURATION: _check_duration,
    STRUCT: _check_value,
    VALUE: _check_value,
    LIST_VALUE: _check_value,
}
