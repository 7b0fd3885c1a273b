"""pprof's profile.proto messages, written in protobuf's wire format by this
module alone: no protobuf runtime, no protoc, no schema fetched at run time,
so --pprof works offline from a fresh install.

The schema (github.com/google/pprof, proto/profile.proto, proto3) is small
and has only ever gained fields; SCHEMA below restates its field numbers and
types, and tests/test_pprof_offline.py checks them against the published
file and the protobuf library's encoding of the same data. The encoder
follows protobuf's own serializer: fields in field-number order, proto3
defaults (0, false, "") left out of singular fields, repeated numbers packed,
repeated strings and messages written one by one (empty ones included)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

_VARINT, _LEN = 0, 2


@dataclass
class ValueType:
    type: int = 0       # string table index
    unit: int = 0       # string table index


@dataclass
class Label:
    key: int = 0
    str: int = 0
    num: int = 0
    num_unit: int = 0


@dataclass
class Sample:
    location_id: list[int] = field(default_factory=list)
    value: list[int] = field(default_factory=list)
    label: list[Label] = field(default_factory=list)


@dataclass
class Mapping:
    id: int = 0
    memory_start: int = 0
    memory_limit: int = 0
    file_offset: int = 0
    filename: int = 0
    build_id: int = 0
    has_functions: bool = False
    has_filenames: bool = False
    has_line_numbers: bool = False
    has_inline_frames: bool = False


@dataclass
class Line:
    function_id: int = 0
    line: int = 0
    column: int = 0


@dataclass
class Location:
    id: int = 0
    mapping_id: int = 0
    address: int = 0
    line: list[Line] = field(default_factory=list)
    is_folded: bool = False


@dataclass
class Function:
    id: int = 0
    name: int = 0
    system_name: int = 0
    filename: int = 0
    start_line: int = 0


@dataclass
class Profile:
    sample_type: list[ValueType] = field(default_factory=list)
    sample: list[Sample] = field(default_factory=list)
    mapping: list[Mapping] = field(default_factory=list)
    location: list[Location] = field(default_factory=list)
    function: list[Function] = field(default_factory=list)
    string_table: list[str] = field(default_factory=list)
    drop_frames: int = 0
    keep_frames: int = 0
    time_nanos: int = 0
    duration_nanos: int = 0
    period_type: ValueType | None = None
    period: int = 0
    comment: list[int] = field(default_factory=list)
    default_sample_type: int = 0
    doc_url: int = 0

    def SerializeToString(self) -> bytes:  # noqa: N802 - the protobuf library's name, for drop-in use
        return encode(self)


Message = Union[ValueType, Label, Sample, Mapping, Line, Location, Function, Profile]
Kind = Union[str, type]   # "int64", "uint64", "bool", "string", or a message class


@dataclass(frozen=True)
class Field:
    number: int
    name: str
    kind: Kind
    repeated: bool = False


def _fields(*spec: tuple) -> tuple[Field, ...]:
    return tuple(Field(*s) for s in spec)


# profile.proto, message by message: (field number, name, type, repeated).
SCHEMA: dict[type, tuple[Field, ...]] = {
    Profile: _fields((1, "sample_type", ValueType, True), (2, "sample", Sample, True),
                     (3, "mapping", Mapping, True), (4, "location", Location, True),
                     (5, "function", Function, True), (6, "string_table", "string", True),
                     (7, "drop_frames", "int64"), (8, "keep_frames", "int64"), (9, "time_nanos", "int64"),
                     (10, "duration_nanos", "int64"), (11, "period_type", ValueType), (12, "period", "int64"),
                     (13, "comment", "int64", True), (14, "default_sample_type", "int64"),
                     (15, "doc_url", "int64")),
    ValueType: _fields((1, "type", "int64"), (2, "unit", "int64")),
    Sample: _fields((1, "location_id", "uint64", True), (2, "value", "int64", True),
                    (3, "label", Label, True)),
    Label: _fields((1, "key", "int64"), (2, "str", "int64"), (3, "num", "int64"), (4, "num_unit", "int64")),
    Mapping: _fields((1, "id", "uint64"), (2, "memory_start", "uint64"), (3, "memory_limit", "uint64"),
                     (4, "file_offset", "uint64"), (5, "filename", "int64"), (6, "build_id", "int64"),
                     (7, "has_functions", "bool"), (8, "has_filenames", "bool"),
                     (9, "has_line_numbers", "bool"), (10, "has_inline_frames", "bool")),
    Location: _fields((1, "id", "uint64"), (2, "mapping_id", "uint64"), (3, "address", "uint64"),
                      (4, "line", Line, True), (5, "is_folded", "bool")),
    Line: _fields((1, "function_id", "uint64"), (2, "line", "int64"), (3, "column", "int64")),
    Function: _fields((1, "id", "uint64"), (2, "name", "int64"), (3, "system_name", "int64"),
                      (4, "filename", "int64"), (5, "start_line", "int64")),
}


def _varint(value: int, out: bytearray) -> None:
    if value < 0:
        value += 1 << 64          # int64: two's complement, always ten bytes
    if not 0 <= value < 1 << 64:
        raise ValueError(f"{value} does not fit in 64 bits")
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _tag(number: int, wire_type: int, out: bytearray) -> None:
    _varint(number << 3 | wire_type, out)


def _length_delimited(number: int, payload: bytes, out: bytearray) -> None:
    _tag(number, _LEN, out)
    _varint(len(payload), out)
    out += payload


def encode(message: Message) -> bytes:
    """The message's protobuf wire-format bytes, as the protobuf library writes them."""
    out = bytearray()
    for f in SCHEMA[type(message)]:
        value = getattr(message, f.name)
        if isinstance(f.kind, type):
            for item in (value if f.repeated else [] if value is None else [value]):
                _length_delimited(f.number, encode(item), out)
        elif f.kind == "string":
            for text in (value if f.repeated else [value] if value else []):
                _length_delimited(f.number, text.encode(), out)
        elif f.repeated:
            if value:
                packed = bytearray()
                for number in value:
                    _varint(int(number), packed)
                _length_delimited(f.number, bytes(packed), out)
        elif value:
            _tag(f.number, _VARINT, out)
            _varint(int(value), out)
    return bytes(out)
