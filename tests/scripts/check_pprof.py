"""Decode a gzipped pprof profile with the protobuf runtime and print a summary.

Usage: check_pprof.py FILE PROFILE_PROTO

PROFILE_PROTO is tests/fixtures/profile.proto (upstream pprof's); it is compiled here
with protoc from grpcio-tools, and the file is parsed with the generated code of the
`protobuf` package, so nothing of pyprof's encoder is trusted. Checks the rules of
profile.proto: gzip on disk, string_table[0] == "", nonzero unique ids, every
location/function/mapping id referenced exists, every string index in range, one value
per sample_type. Also checks that the bytes are the canonical encoding (protobuf
re-serializes the parsed message to exactly the same bytes). Prints JSON on stdout:

  {"sample_type": [[type, unit]], "period_type": [type, unit], "period",
   "default_sample_type", "time_nanos", "duration_nanos", "comments": [...],
   "mappings": [{"id", "filename", "has_functions"}], "functions": [{"id", "name",
   "system_name", "filename", "start_line"}], "locations": n,
   "samples": [{"labels": {key: str}, "values": [...],
                "frames": [{"name", "file", "line", "start_line"}, ...root first]}]}

and exits 1 (reasons on stderr) when anything is wrong.
"""

import gzip
import importlib
import json
import os
import shutil
import sys
import tempfile

from grpc_tools import protoc


def load_pb2(proto_path):
    out = tempfile.mkdtemp(prefix="pyprof-pb2-")
    proto_dir, proto_file = os.path.split(os.path.abspath(proto_path))
    # protoc needs its bundled well-known types on the include path.
    wkt = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main(["protoc", "-I" + proto_dir, "-I" + wkt, "--python_out=" + out, proto_file])
    if rc != 0:
        fail(["protoc failed on %s (exit %d)" % (proto_path, rc)])
    sys.path.insert(0, out)
    try:
        return importlib.import_module(proto_file[: -len(".proto")] + "_pb2")
    finally:
        # Loaded: the generated file is no longer needed.
        sys.path.remove(out)
        shutil.rmtree(out, ignore_errors=True)


def main():
    path, proto_path = sys.argv[1], sys.argv[2]
    pb2 = load_pb2(proto_path)
    with open(path, "rb") as f:
        gz = f.read()
    errors = []
    if gz[:2] != b"\x1f\x8b":
        fail(["not gzip-compressed (first bytes %r)" % gz[:4]])
    raw = gzip.decompress(gz)
    prof = pb2.Profile()
    prof.ParseFromString(raw)
    if prof.SerializeToString() != raw:
        errors.append("not the canonical encoding: protobuf re-serializes it differently")

    st = list(prof.string_table)
    if not st or st[0] != "":
        errors.append("string_table[0] must be the empty string")

    def s(ix, what):
        if not (0 <= ix < len(st)):
            errors.append("%s: string index %d out of range (%d strings)" % (what, ix, len(st)))
            return None
        return st[ix]

    def unique_ids(items, what):
        ids = {}
        for it in items:
            if it.id == 0:
                errors.append("%s with id 0" % what)
            if it.id in ids:
                errors.append("duplicate %s id %d" % (what, it.id))
            ids[it.id] = it
        return ids

    mappings = unique_ids(prof.mapping, "mapping")
    functions = unique_ids(prof.function, "function")
    locations = unique_ids(prof.location, "location")

    for m in prof.mapping:
        s(m.filename, "mapping %d filename" % m.id)
    for fn in prof.function:
        for field in ("name", "system_name", "filename"):
            s(getattr(fn, field), "function %d %s" % (fn.id, field))
    for loc in prof.location:
        if loc.mapping_id and loc.mapping_id not in mappings:
            errors.append("location %d: unknown mapping %d" % (loc.id, loc.mapping_id))
        if not loc.line:
            errors.append("location %d has no line" % loc.id)
        for ln in loc.line:
            if ln.function_id not in functions:
                errors.append("location %d: unknown function %d" % (loc.id, ln.function_id))

    sample_type = [[s(v.type, "sample_type"), s(v.unit, "sample_type")] for v in prof.sample_type]
    samples = []
    for i, smp in enumerate(prof.sample):
        if len(smp.value) != len(prof.sample_type):
            errors.append(
                "sample %d: %d values for %d sample types" % (i, len(smp.value), len(prof.sample_type))
            )
        frames = []
        for lid in smp.location_id:
            loc = locations.get(lid)
            if loc is None:
                errors.append("sample %d: unknown location %d" % (i, lid))
                continue
            # Inlined lines: the last one is the caller; leaf first, like the samples.
            for ln in loc.line:
                fn = functions.get(ln.function_id)
                if fn is None:
                    continue
                frames.append(
                    {
                        "name": s(fn.name, "function name"),
                        "file": s(fn.filename, "function filename"),
                        "line": ln.line,
                        "start_line": fn.start_line,
                    }
                )
        frames.reverse()  # root first
        labels = {}
        for lb in smp.label:
            key = s(lb.key, "label key")
            if lb.str:
                labels[key] = s(lb.str, "label str")
            else:
                labels[key] = lb.num
        samples.append({"labels": labels, "values": list(smp.value), "frames": frames})

    out = {
        "sample_type": sample_type,
        "period_type": [s(prof.period_type.type, "period_type"), s(prof.period_type.unit, "period_type")],
        "period": prof.period,
        "default_sample_type": s(prof.default_sample_type, "default_sample_type"),
        "time_nanos": prof.time_nanos,
        "duration_nanos": prof.duration_nanos,
        "comments": [s(c, "comment") for c in prof.comment],
        "mappings": [
            {"id": m.id, "filename": s(m.filename, "mapping"), "has_functions": m.has_functions}
            for m in prof.mapping
        ],
        "functions": [
            {
                "id": fn.id,
                "name": s(fn.name, "function"),
                "system_name": s(fn.system_name, "function"),
                "filename": s(fn.filename, "function"),
                "start_line": fn.start_line,
            }
            for fn in prof.function
        ],
        "locations": len(prof.location),
        "samples": samples,
    }
    if errors:
        fail(errors)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


def fail(errors):
    for e in errors[:50]:
        sys.stderr.write("check_pprof: %s\n" % e)
    sys.exit(1)


if __name__ == "__main__":
    main()
