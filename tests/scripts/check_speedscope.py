"""Validate a speedscope file against speedscope's own JSON schema and print a summary.

Usage: check_speedscope.py FILE SCHEMA

SCHEMA is file-format-schema.json from the `speedscope` npm package (installed by
scripts/install-test-tools.sh). Besides the schema, checks what the schema cannot say:
frame indexes in range, one weight per sample, endValue - startValue == sum of weights.
Prints JSON on stdout:

  {"exporter", "name", "frames": n, "profiles": [{"name", "type", "unit", "total",
   "stacks": [{"frames": [{"name", "file", "line"}, ...root first], "weight"}]}]}

and exits 1 (with the reasons on stderr) when anything is wrong.
"""

import json
import sys

import jsonschema


def main():
    path, schema_path = sys.argv[1], sys.argv[2]
    with open(schema_path) as f:
        schema = json.load(f)
    with open(path) as f:
        doc = json.load(f)

    errors = []
    validator = jsonschema.Draft7Validator(schema)
    for e in validator.iter_errors(doc):
        errors.append("schema: %s at %s" % (e.message, "/".join(map(str, e.absolute_path))))
    if errors:
        fail(errors)

    frames = doc["shared"]["frames"]
    out = {
        "exporter": doc.get("exporter"),
        "name": doc.get("name"),
        "frames": len(frames),
        "profiles": [],
    }
    active = doc.get("activeProfileIndex")
    if active is not None and not (0 <= active < max(1, len(doc["profiles"]))):
        errors.append("activeProfileIndex %r out of range" % active)
    for i, p in enumerate(doc["profiles"]):
        where = "profile %d (%s)" % (i, p.get("name"))
        if p["type"] != "sampled":
            errors.append("%s: type %s, want sampled" % (where, p["type"]))
            continue
        if len(p["samples"]) != len(p["weights"]):
            errors.append(
                "%s: %d samples but %d weights" % (where, len(p["samples"]), len(p["weights"]))
            )
        stacks = []
        for sample, weight in zip(p["samples"], p["weights"]):
            if weight < 0:
                errors.append("%s: negative weight %r" % (where, weight))
            named = []
            for ix in sample:
                if not (isinstance(ix, int) and 0 <= ix < len(frames)):
                    errors.append("%s: frame index %r out of range" % (where, ix))
                    continue
                fr = frames[ix]
                named.append({"name": fr["name"], "file": fr.get("file"), "line": fr.get("line")})
            stacks.append({"frames": named, "weight": weight})
        total = sum(p["weights"])
        if p["endValue"] - p["startValue"] != total:
            errors.append(
                "%s: endValue - startValue = %r, sum of weights = %r"
                % (where, p["endValue"] - p["startValue"], total)
            )
        out["profiles"].append(
            {"name": p["name"], "type": p["type"], "unit": p["unit"], "total": total, "stacks": stacks}
        )
    if errors:
        fail(errors)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


def fail(errors):
    for e in errors[:50]:
        sys.stderr.write("check_speedscope: %s\n" % e)
    sys.exit(1)


if __name__ == "__main__":
    main()
