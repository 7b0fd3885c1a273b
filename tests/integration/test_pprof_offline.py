"""--pprof with no network: the profile is encoded by cgo_audit/report/
profileproto.py alone. Exactness is checked three ways: the Go toolchain's own
pprof decodes it to the JSON report's exact figures; the encoder's schema
equals pprof's published profile.proto field by field; and the protobuf
library, given that schema, re-encodes our bytes (and the same data) to the
very same bytes. The last two need profile.proto through the Go module proxy
(or its cache) and skip cleanly without it."""

from __future__ import annotations

import dataclasses
import gzip
import os
import re
import subprocess

import pytest

from cgo_audit.report import profileproto as pp
from cgo_audit.toolchain.gotool import go_executable

from helpers import audit_json, copy_cstring_module, downloaded_module, result_named

PPROF_MODULE = "github.com/google/pprof"
PPROF_VERSION = "v0.0.0-20261105003125-4bf881d7fb0b"
RAW_SAMPLE = re.compile(r"^\s+(\d+)\s+(\d+): [\d ]+$")
OPS_LABEL = re.compile(r"ops:\[(\d+) count\]")


@pytest.fixture(scope="module")
def offline_audit(tmp_path_factory):
    """`bench --pprof` from a fresh cache with the module proxy switched off."""
    work = tmp_path_factory.mktemp("offline")
    module = copy_cstring_module(work / "cstring")
    env = {"GOPROXY": "off", "GOMODCACHE": str(work / "gomodcache"), "CGO_AUDIT_CACHE": str(work / "cache")}
    profile = work / "leak.pb.gz"
    proc, report = audit_json(work, "--dir", str(module), "--bench", "GetValueLeaky", "--pprof", str(profile),
                              env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr   # 1: a leak was found
    return report, profile


def test_pprof_is_written_offline_and_go_tool_pprof_reads_the_exact_leak(offline_audit):
    report, profile = offline_audit
    leaky = result_named(report, "BenchmarkGetValueLeaky")
    assert leaky["c_leak_bytes_per_op"] == 26.0
    raw = subprocess.run([go_executable(), "tool", "pprof", "-raw", str(profile)], capture_output=True,
                         text=True, check=True).stdout
    samples = [tuple(map(int, m.groups())) for m in map(RAW_SAMPLE.match, raw.splitlines()) if m]
    ops = {int(n) for n in OPS_LABEL.findall(raw)}
    assert len(ops) == 1, raw
    (largest,) = ops
    points = {p["ops"]: p for p in leaky["samples"]}
    assert largest == max(points), (largest, sorted(points))
    # What the largest run left behind, allocation by allocation: 26 bytes in 2 blocks per op.
    assert sum(space for _, space in samples) == points[largest]["c_live_bytes"] == 26 * largest
    assert sum(objects for objects, _ in samples) == 2 * largest
    assert "PeriodType: space bytes" in raw and "inuse_space/bytes[dflt]" in raw
    top = subprocess.run([go_executable(), "tool", "pprof", "-top", str(profile)], capture_output=True,
                         text=True, check=True).stdout
    assert "C.CString" in top and "cstring.GetValueLeaky" in top


@pytest.fixture(scope="module")
def published_proto() -> str:
    """pprof's profile.proto, through the Go module proxy (or its cache)."""
    source = downloaded_module(PPROF_MODULE, PPROF_VERSION, "pprof's profile.proto",
                               env={**os.environ, "GOFLAGS": "-mod=mod"})
    return (source / "proto" / "profile.proto").read_text()


def parse_proto(text: str) -> dict[str, list[tuple[int, str, str, bool]]]:
    """{message: [(number, name, type, repeated)]} of a flat proto3 file like profile.proto."""
    text = re.sub(r"//[^\n]*", "", text)
    messages = {}
    for name, body in re.findall(r"message (\w+) \{(.*?)\}", text, re.S):
        messages[name] = sorted((int(number), field, kind, bool(repeated)) for repeated, kind, field, number
                                in re.findall(r"(repeated )?(\w+) (\w+) = (\d+);", body))
    return messages


def our_schema() -> dict[str, list[tuple[int, str, str, bool]]]:
    return {cls.__name__: sorted((f.number, f.name, f.kind if isinstance(f.kind, str) else f.kind.__name__,
                                  f.repeated) for f in fields) for cls, fields in pp.SCHEMA.items()}


@pytest.mark.network
def test_encoder_schema_is_pprofs_published_profile_proto(published_proto):
    published = parse_proto(published_proto)
    assert set(published) == set(our_schema())
    assert published == our_schema()


def protobuf_classes(proto_text: str):
    """profile.proto's messages as protobuf library classes, built from the
    parsed schema (no protoc needed)."""
    descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
    from google.protobuf import descriptor_pool, message_factory

    scalar = {"int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
              "uint64": descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
              "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
              "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING}
    package = re.search(r"^package ([\w.]+);", proto_text, re.M).group(1)
    file = descriptor_pb2.FileDescriptorProto(name="profile.proto", package=package, syntax="proto3")
    for name, fields in parse_proto(proto_text).items():
        message = file.message_type.add(name=name)
        for number, field, kind, repeated in fields:
            f = message.field.add(name=field, number=number, label=3 if repeated else 1)
            if kind in scalar:
                f.type = scalar[kind]
            else:
                f.type, f.type_name = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE, f".{package}.{kind}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
            for name in parse_proto(proto_text)}


def every_field_profile() -> pp.Profile:
    """Every field set, with the edge cases of the wire format: negative
    int64 (ten-byte varints), the largest uint64, empty strings in the
    table, a present but empty sub-message, multi-byte lengths."""
    return pp.Profile(
        sample_type=[pp.ValueType(type=1, unit=2), pp.ValueType()],
        sample=[pp.Sample(location_id=[1, 2, 2**64 - 1], value=[-1, 0, 2**63 - 1, -(2**63)],
                          label=[pp.Label(key=3, str=4), pp.Label(key=5, num=-7, num_unit=2)]),
                pp.Sample()],
        mapping=[pp.Mapping(id=1, memory_start=0x400000, memory_limit=2**64 - 1, file_offset=4096, filename=6,
                            build_id=7, has_functions=True, has_filenames=True, has_line_numbers=True,
                            has_inline_frames=True)],
        location=[pp.Location(id=1, mapping_id=1, address=0x401000, is_folded=True,
                              line=[pp.Line(function_id=1, line=35, column=-2), pp.Line()]),
                  pp.Location(id=2)],
        function=[pp.Function(id=1, name=8, system_name=8, filename=9, start_line=300)],
        string_table=["", "inuse_space", "bytes", "x" * 300, "", "ü∂", "/bin/x", "id", "f", "f.go"],
        drop_frames=1, keep_frames=2, time_nanos=1_764_560_000_000_000_000, duration_nanos=-5,
        period_type=pp.ValueType(), period=524288, comment=[3, 0, 4], default_sample_type=1, doc_url=3)


@pytest.mark.network
def test_encoding_is_byte_for_byte_the_protobuf_librarys(published_proto):
    classes = protobuf_classes(published_proto)
    from google.protobuf import json_format

    for data in (every_field_profile(), pp.Profile()):
        ours = pp.encode(data)
        theirs = json_format.ParseDict(dataclasses.asdict(data), classes["Profile"]())
        assert theirs.SerializeToString() == ours
        decoded = classes["Profile"].FromString(ours)
        assert decoded == theirs and decoded.SerializeToString() == ours


@pytest.mark.network
def test_a_real_profile_reencodes_to_the_same_bytes(published_proto, offline_audit):
    classes = protobuf_classes(published_proto)
    _, profile = offline_audit
    ours = gzip.decompress(profile.read_bytes())
    decoded = classes["Profile"].FromString(ours)
    assert len(decoded.sample) > 0 and decoded.string_table[0] == ""
    assert decoded.SerializeToString() == ours
