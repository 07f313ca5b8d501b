"""Validate a Chrome Trace Event Format file's structure and print a summary.

Usage: check_chrometrace.py FILE

No maintained Python reader of the format installs from PyPI (Perfetto's Python API
downloads its trace processor at run time), so this checks the structure itself, per
the Trace Event Format document: a `traceEvents` array; every event an object with
string `name` and `ph` and integer `pid`/`tid`; complete events (`X`) with numeric
non-negative `ts`/`dur`; metadata events (`M`) of the known kinds with their args; a
`thread_name` for every thread with events and a `process_name` for every process; and
per thread, proper nesting: any two complete events are either disjoint or one lies
wholly inside the other. (The tests also import the file with speedscope's own
trace-event importer, see check_speedscope_import.mjs.) Prints JSON on stdout:

  {"process_names": {pid: name}, "threads": [{"pid", "tid", "name", "events",
   "max_depth", "total_us", "stacks": [{"frames": [{"name", "function", "file", "line"}, ...root first],
   "self_us"}]}]}   (function, file and line are the events' args, null when absent)

and exits 1 (reasons on stderr) when anything is wrong.
"""

import json
import math
import sys

METADATA = {"process_name", "thread_name", "process_sort_index", "thread_sort_index", "process_labels"}


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def main():
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    errors = []
    if isinstance(doc, dict):
        events = doc.get("traceEvents")
        if not isinstance(events, list):
            fail(["top-level object without a traceEvents array"])
    elif isinstance(doc, list):
        events = doc
    else:
        fail(["top level is neither an object nor an array"])

    process_names = {}
    thread_names = {}
    complete = {}
    for i, e in enumerate(events):
        where = "event %d" % i
        if not isinstance(e, dict):
            errors.append("%s is not an object" % where)
            continue
        ph, name = e.get("ph"), e.get("name")
        if not (isinstance(ph, str) and len(ph) == 1):
            errors.append("%s: bad ph %r" % (where, ph))
            continue
        if not isinstance(name, str):
            errors.append("%s: name is not a string" % where)
        for k in ("pid", "tid"):
            if not is_int(e.get(k)):
                errors.append("%s: %s is not an integer: %r" % (where, k, e.get(k)))
        if "args" in e and not isinstance(e["args"], dict):
            errors.append("%s: args is not an object" % where)
        key = (e.get("pid"), e.get("tid"))
        if ph == "M":
            args = e.get("args") or {}
            if name not in METADATA:
                errors.append("%s: unknown metadata event %r" % (where, name))
            elif name in ("process_name", "thread_name"):
                if not isinstance(args.get("name"), str):
                    errors.append("%s: %s without a string args.name" % (where, name))
                elif name == "process_name":
                    process_names[e.get("pid")] = args["name"]
                else:
                    thread_names[key] = args["name"]
            elif name.endswith("_sort_index") and not is_int(args.get("sort_index")):
                errors.append("%s: %s without an integer args.sort_index" % (where, name))
        elif ph == "X":
            ts, dur = e.get("ts"), e.get("dur")
            if not (is_num(ts) and ts >= 0):
                errors.append("%s: bad ts %r" % (where, ts))
                continue
            if not (is_num(dur) and dur >= 0):
                errors.append("%s: bad dur %r" % (where, dur))
                continue
            if "cat" in e and not isinstance(e["cat"], str):
                errors.append("%s: cat is not a string" % where)
            args = e.get("args") if isinstance(e.get("args"), dict) else {}
            frame = {
                "name": name,
                "function": args.get("function"),
                "file": args.get("file"),
                "line": args.get("line"),
            }
            complete.setdefault(key, []).append((ts, dur, frame, i))
        else:
            errors.append("%s: unexpected phase %r (this writer emits only X and M)" % (where, ph))

    threads = []
    for key in sorted(complete, key=lambda k: (k[0], k[1])):
        pid, tid = key
        if key not in thread_names:
            errors.append("thread %s/%s has events but no thread_name" % (pid, tid))
        if pid not in process_names:
            errors.append("process %s has events but no process_name" % pid)
        # Longer first at equal start, so parents come before their children.
        evs = sorted(complete[key], key=lambda t: (t[0], -t[1], t[3]))
        # Each node: [start, end, name, time covered by children, path of frames].
        stack = []
        stacks = []
        total = 0.0
        max_depth = 0

        def close(node):
            self_us = (node[1] - node[0]) - node[3]
            if self_us > 0:
                stacks.append({"frames": node[4], "self_us": self_us})

        for ts, dur, frame, i in evs:
            name = frame["name"]
            end = ts + dur
            while stack and stack[-1][1] <= ts:
                close(stack.pop())
            if stack and end > stack[-1][1]:
                errors.append(
                    "thread %s/%s: event %d (%r, %r..%r) overlaps %r (%r..%r) without nesting"
                    % (pid, tid, i, name, ts, end, stack[-1][2], stack[-1][0], stack[-1][1])
                )
                continue
            if stack:
                stack[-1][3] += dur
                path = stack[-1][4] + [frame]
            else:
                total += dur
                path = [frame]
            stack.append([ts, end, name, 0.0, path])
            max_depth = max(max_depth, len(stack))
        while stack:
            close(stack.pop())
        threads.append(
            {
                "pid": pid,
                "tid": tid,
                "name": thread_names.get(key),
                "events": len(evs),
                "max_depth": max_depth,
                "total_us": total,
                "stacks": stacks,
            }
        )
    if errors:
        fail(errors)
    json.dump({"process_names": {str(k): v for k, v in process_names.items()}, "threads": threads}, sys.stdout)
    sys.stdout.write("\n")


def fail(errors):
    for e in errors[:50]:
        sys.stderr.write("check_chrometrace: %s\n" % e)
    sys.exit(1)


if __name__ == "__main__":
    main()
