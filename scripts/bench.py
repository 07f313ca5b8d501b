#!/usr/bin/env python3
"""pyprof against its peers, side by side in one run, on this machine.

    python3 scripts/bench.py --quick           # smoke run, ~10 minutes
    python3 scripts/bench.py                   # full: ~45 minutes (+10 with the RSS run)
    python3 scripts/bench.py --only cpu,accuracy --rounds 5
    python3 scripts/bench.py --update-readme   # also rewrite README.md's table

Every row says what was measured: the tool (pyprof with its bpf, ptrace or read sampler;
py-spy; CPython 3.15's own profiling.sampling), its mode, the workload (a toy target from
scripts/bench_targets/, or a pyperformance benchmark: real code nobody here wrote), the
Python, and the build. Tools are run alternately, round after round (the order flips
every round), and a row gives the median with min-max and n. A goal is PASS only when
it holds outside the noise (the bootstrap 90% interval of the median is on the right
side of the bound), FAIL when the whole interval is on the wrong side, else "within
noise".

Sections (--only):
  cpu        profiler CPU per sample (the slope between a 2 s and a 6 s run, so that
             start-up is not counted; the bpf sampler's in-kernel time included), depth
             20 and 500, 1 kHz, one Python 3.15 target (spin.py) and pyperformance raytrace
  native     profiler CPU per sample with --native (native frames unwound and merged),
             depth 20, 1 kHz, Python 3.12 (spin.py): pyprof bpf and ptrace beside
             py-spy --native (which always pauses the target)
  syscalls   system calls per tick (strace -c -f, slope of two runs; and pyprof's count)
  delivered  delivered ÷ requested at 1, 10 and 50 kHz, depth 50
  threads    1,000 sleeping threads + 1 busy at 100 Hz: delivered, profiler CPU
  slowdown   target slowdown: pyperformance raytrace (3.12) timed by pyperf, and the toy
             work.py, alone and under each tool at 100 Hz and 1 kHz
  accuracy   leaf-function distribution against a frozen profile (pyprof ptrace) of the
             same process, total variation distance, on 5 pyperformance benchmarks,
             3.12 and 3.15
  rss        profiler peak RSS after a long run at 1 kHz
  render     pyprof rendering an SVG / an opcode report from 1,000,000 samples

Writes target/bench/results.json (every run) and target/bench/results.md. py-spy is
installed from PyPI into target/bench-venv (for comparison only); pyperformance by
scripts/install-pyperformance.sh. Every process started here is stopped on exit, error
or Ctrl-C. Run as root (ptrace, bpf, the sid chroot).
"""
import argparse
import atexit
import datetime
import json
import math
import os
import platform
import random
import re
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = os.path.join(ROOT, "scripts", "bench_targets")
TEST_SCRIPTS = os.path.join(ROOT, "tests", "scripts")
PYENV = os.environ.get("PYENV_ROOT", "/root/.pyenv")
SID = "/opt/sid"
PYSPY_VERSION = "0.4.3"
BENCHMARKS = ("raytrace", "chaos", "go", "deltablue", "richards")

def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# Child processes: every one is registered and killed on exit, error, Ctrl-C or SIGTERM.

class Children:
    def __init__(self):
        self.live = {}  # pid -> (Popen, kind)

    def spawn(self, argv, kind, **kw):
        # A session of its own: a Ctrl-C in the terminal reaches only this script, which
        # then stops the children in order (profilers first, so none is left pausing a
        # target).
        # Signals are held off between the fork and the registration, so an interrupt
        # can't leave an unregistered child behind; the child unblocks them before exec.
        mask = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        old = signal.pthread_sigmask(signal.SIG_BLOCK, mask)
        try:
            p = subprocess.Popen(argv, start_new_session=True,
                                 preexec_fn=lambda: signal.pthread_sigmask(
                                     signal.SIG_SETMASK, old), **kw)
            self.live[p.pid] = (p, kind)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return p

    def reap(self, p, timeout):
        """Wait up to timeout seconds; return the child's rusage, or None if it still runs."""
        if p.returncode is not None and p.pid not in self.live:
            return getattr(p, "_bench_rusage", None)
        deadline = time.monotonic() + timeout
        fd = None
        try:
            fd = os.pidfd_open(p.pid)
        except (AttributeError, OSError):
            fd = None
        try:
            while True:
                try:
                    pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                except ChildProcessError:
                    pid, status, ru = p.pid, 0, None
                if pid == p.pid:
                    if hasattr(os, "waitstatus_to_exitcode"):
                        p.returncode = os.waitstatus_to_exitcode(status)
                    else:
                        p.returncode = (-(status & 0x7F) if status & 0x7F
                                        else (status >> 8) & 0xFF)
                    p._bench_rusage = ru
                    self.live.pop(p.pid, None)
                    for f in (p.stdin, p.stdout, p.stderr):
                        if f is not None:
                            try:
                                f.close()
                            except OSError:
                                pass
                    return ru
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                if fd is not None:
                    select.select([fd], [], [], remaining)
                else:
                    time.sleep(min(0.05, remaining))
        finally:
            if fd is not None:
                os.close(fd)

    def stop(self, p, sig=signal.SIGTERM, grace=3.0):
        """Signal, wait up to grace seconds, then SIGKILL; return rusage."""
        if p.pid not in self.live:
            return getattr(p, "_bench_rusage", None)
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass
        ru = self.reap(p, grace)
        if ru is None and p.pid in self.live:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            ru = self.reap(p, 10.0)
        return ru

    def kill(self, p):
        return self.stop(p, signal.SIGKILL, 10.0)

    def cleanup(self):
        if not self.live:
            return
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            procs = list(self.live.values())
            # profilers first (SIGTERM lets them detach), then targets (SIGKILL)
            for p, kind in procs:
                if kind == "profiler":
                    try:
                        os.kill(p.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            for p, kind in procs:
                if kind == "profiler":
                    self.stop(p, signal.SIGTERM, 3.0)
            for p, kind in procs:
                if kind != "profiler":
                    self.kill(p)
        finally:
            signal.signal(signal.SIGINT, old)


CHILDREN = Children()
atexit.register(CHILDREN.cleanup)


def _on_signal(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


# ---------------------------------------------------------------------------------------
# Small helpers

def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def cpu_of(ru):
    return None if ru is None else ru.ru_utime + ru.ru_stime


def read_line(p, timeout):
    """One line of the child's stdout within timeout seconds (None on timeout/EOF)."""
    fd = p.stdout.fileno()
    buf = getattr(p, "_bench_buf", b"")
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            p._bench_buf = buf
            return None
        r, _, _ = select.select([fd], [], [], remaining)
        if not r:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            p._bench_buf = buf
            return None
        buf += chunk
    line, buf = buf.split(b"\n", 1)
    p._bench_buf = buf
    return line.decode(errors="replace")


def tail(path, n=3):
    try:
        with open(path, errors="replace") as f:
            lines = [l.rstrip() for l in f if l.strip()]
        return lines[-n:]
    except OSError:
        return []


def fmt(x, spec=".1f", none="n/a"):
    return none if x is None else format(x, spec)


def fmt_pct(x, spec="+.2f"):
    return "n/a" if x is None else format(x, spec) + "%"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def pass_fail(ok):
    return "n/a" if ok is None else ("**PASS**" if ok else "**FAIL**")


def cpu_busy(seconds=2.0):
    """Share of all cores busy (0-100) over `seconds`, from /proc/stat: other load."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v[:8]), idle
    try:
        t0, i0 = snap()
        time.sleep(seconds)
        t1, i1 = snap()
    except (OSError, ValueError):
        return None
    return None if t1 == t0 else (1 - (i1 - i0) / (t1 - t0)) * 100




def run_cmd(argv, **kw):
    try:
        return subprocess.run(argv, capture_output=True, text=True, **kw)
    except OSError as e:
        return subprocess.CompletedProcess(argv, 127, "", str(e))


# ---------------------------------------------------------------------------------------
# Statistics: medians, bootstrap intervals, verdicts

def bootstrap_median(xs, iters=2000, level=0.90, seed=7):
    """(low, high) of a bootstrap percentile interval of the median."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    if len(xs) == 1:
        return xs[0], xs[0]
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choice(xs) for _ in xs) for _ in range(iters))
    lo = meds[int((1 - level) / 2 * iters)]
    hi = meds[min(iters - 1, int((1 + level) / 2 * iters))]
    return lo, hi


def verdict(xs, op, bound):
    """PASS / FAIL / within noise for the goal `median op bound` ("<=" or ">=")."""
    lo, hi = bootstrap_median(xs)
    if lo is None:
        return "n/a"
    if op == "<=":
        return "**PASS**" if hi <= bound else ("**FAIL**" if lo > bound else "within noise")
    return "**PASS**" if lo >= bound else ("**FAIL**" if hi < bound else "within noise")


# ---------------------------------------------------------------------------------------
# Interpreters and targets

class Python:
    """An interpreter that runs targets: a command prefix, and the root it sees."""

    def __init__(self, label, cmd, root=None):
        self.label, self.cmd, self.root = label, cmd, root

    def ok(self):
        r = run_cmd(self.cmd + ["-c", "pass"], timeout=60)
        return r.returncode == 0

    def path(self, host_path):
        """Where the target sees `host_path` (copied under the chroot when there is one)."""
        if not self.root:
            return host_path
        dst_dir = os.path.join(self.root, "tmp", "pyprof-bench")
        os.makedirs(dst_dir, exist_ok=True)
        dst = os.path.join(dst_dir, os.path.basename(host_path))
        shutil.copyfile(host_path, dst)
        return "/tmp/pyprof-bench/" + os.path.basename(host_path)

    def host_path(self, target_path):
        return os.path.join(self.root, target_path.lstrip("/")) if self.root else target_path


def py312():
    return Python("3.12", [os.path.join(PYENV, "versions", "3.12.1", "bin", "python")])


def py315():
    return Python("3.15", ["chroot", SID, "python3.15"], root=SID)


# ---------------------------------------------------------------------------------------
# The profilers

class Tool:
    """A profiler configuration: how to run it and read what it wrote."""

    def __init__(self, name, kind, mode, extra=()):
        self.name, self.kind, self.mode, self.extra = name, kind, mode, list(extra)

    def __repr__(self):
        return self.name


def pyprof_tools():
    return [Tool("pyprof bpf", "pyprof", "bpf", ["--sampler", "bpf"]),
            Tool("pyprof ptrace", "pyprof", "ptrace", ["--sampler", "ptrace"]),
            Tool("pyprof read", "pyprof", "read", ["--sampler", "read"])]


PYSPY_NB = Tool("py-spy", "py-spy", "nonblocking", ["--nonblocking"])
PYSPY_BLK = Tool("py-spy", "py-spy", "blocking")
PROFSAMP = Tool("profiling.sampling", "profsamp", "nonblocking")


def short_function(name):
    """"Class.method" (3.11+ qualname) → "method": the name every tool reports."""
    return name.rsplit(".", 1)[-1] if not name.startswith("<") else name


class Bench:
    def __init__(self, a):
        self.a = a
        self.pyprof = a.pyprof
        self.pyspy = a.py_spy
        self.work = os.path.join(a.out_dir, "work")
        os.makedirs(self.work, exist_ok=True)
        self.runs = []
        self.rows = []
        self.errors = {}
        self.seq = 0
        self.build = a.build_label
        self.pyperf = {}   # version -> (Python, benchmarks dir as it sees it)

    # -- rows -----------------------------------------------------------------------------

    def row(self, section, measure, tool, workload, python, values, unit, goal=None,
            fmt_spec=".1f", note=""):
        values = [v for v in values if v is not None]
        med = median(values)
        lo, hi = (min(values), max(values)) if values else (None, None)
        v = "n/a"
        goal_text = ""
        if goal is not None:
            op, bound, text = goal
            goal_text = text
            v = verdict(values, op, bound)
        r = {"section": section, "measure": measure,
             "tool": tool if isinstance(tool, str) else tool.name,
             "mode": "" if isinstance(tool, str) else tool.mode,
             "workload": workload, "python": python, "build": self.build,
             "values": values, "median": med, "min": lo, "max": hi, "n": len(values),
             "unit": unit, "goal": goal_text, "verdict": v if goal else "", "fmt": fmt_spec,
             "note": note}
        self.rows.append(r)
        log("[%s] %s | %s %s | %s %s: median %s%s (%s–%s, n=%d) %s" % (
            section, measure, r["tool"], r["mode"], workload, python,
            fmt(med, fmt_spec), unit, fmt(lo, fmt_spec), fmt(hi, fmt_spec), len(values),
            r["verdict"]))
        return r

    # -- running profilers ---------------------------------------------------------------

    def _out(self, ext):
        self.seq += 1
        return os.path.join(self.work, "run-%d.%s" % (self.seq, ext))

    def profile(self, tool, py, pid, rate, duration, extra=(), strace=False, keep=False):
        """Run `tool` on `pid` for `duration` s at `rate` Hz and return what it did:
        cpu_s (user+sys, plus the bpf program's kernel time), samples, leaves (Counter of
        (function, file) leaf samples), and pyprof's meta fields."""
        h = self.start_profile(tool, py, pid, rate, duration, extra, strace)
        return self.finish_profile(h, duration * 4 + 120, keep)

    def start_profile(self, tool, py, pid, rate, duration, extra=(), strace=False):
        res = {"tool": tool.name, "mode": tool.mode, "rate": rate, "duration": duration}
        stderr_path = self._out("log")
        out = None
        if tool.kind == "pyprof":
            out = self._out("json")
            argv = [self.pyprof, "record", "-p", str(pid), "-r", str(rate), "-d",
                    str(duration), "-f", "json", "-o", out, "-q"] + tool.extra + list(extra)
        elif tool.kind == "py-spy":
            out = self._out("txt")
            argv = [self.pyspy, "record", "-p", str(pid), "-r", str(rate), "-d",
                    str(int(math.ceil(duration))), "-f", "raw", "-o", out] + tool.extra
        else:  # profiling.sampling, inside the chroot
            rel = "/tmp/pyprof-bench/ps-%d.txt" % (self.seq + 1)
            self.seq += 1
            out = os.path.join(SID, rel.lstrip("/"))
            os.makedirs(os.path.dirname(out), exist_ok=True)
            # (its -d takes whole seconds)
            argv = ["chroot", SID, "python3.15", "-m", "profiling.sampling", "attach",
                    "-r", str(rate), "-d", str(int(math.ceil(duration))), "-a",
                    "--collapsed", "-o", rel, str(pid)] + tool.extra
        strace_out = None
        if strace:
            strace_out = self._out("strace")
            argv = ["strace", "-f", "-c", "-o", strace_out] + argv
        res["argv"] = argv
        if out and os.path.exists(out):
            os.unlink(out)
        with open(stderr_path, "wb") as errf:
            p = CHILDREN.spawn(argv, "profiler", stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=errf)
        return {"p": p, "res": res, "tool": tool, "out": out, "stderr": stderr_path,
                "strace": strace_out, "t0": time.monotonic()}

    def finish_profile(self, h, timeout, keep=False):
        p, res, tool, out = h["p"], h["res"], h["tool"], h["out"]
        stderr_path, strace_out = h["stderr"], h["strace"]
        ru = CHILDREN.reap(p, timeout)
        if ru is None:
            ru = CHILDREN.stop(p, signal.SIGINT, 10)
        res["wall_s"] = time.monotonic() - h["t0"]
        res["exit"] = p.returncode
        res["cpu_s"] = cpu_of(ru)
        res["maxrss_kb"] = None if ru is None else ru.ru_maxrss
        res["samples"] = None
        leaves = Counter()
        try:
            if tool.kind == "pyprof":
                with open(out) as f:
                    d = json.load(f)
                m = d["meta"]
                for k in ("samples", "ticks", "late", "memory_reads", "syscalls",
                          "bpf_runs", "bpf_run_ns", "duration_secs", "sampler",
                          "target_cpu_secs"):
                    res[k] = m.get(k)
                res["errors"] = sum(m.get("errors", {}).values())
                res["distinct_stacks"] = len(d["stacks"])
                for s in d["stacks"]:
                    f = d["frames"][s["frames"][-1]]
                    leaves[(short_function(f["function"]),
                            os.path.basename(f["file"]))] += s["count"]
                if res.get("bpf_run_ns") and res["cpu_s"] is not None:
                    res["cpu_s"] += res["bpf_run_ns"] / 1e9
            else:
                n = 0
                with open(out, errors="replace") as f:
                    for line in f:
                        line = line.rstrip("\n")
                        head, _, cnt = line.rpartition(" ")
                        if not head or not cnt.isdigit():
                            continue
                        n += int(cnt)
                        leaf = head.split(";")[-1]
                        if tool.kind == "py-spy":
                            # "name (path:line)"
                            mm = re.match(r"(.*) \((.*):\d+\)$", leaf)
                            key = (short_function(mm.group(1)), os.path.basename(mm.group(2))) \
                                if mm else (leaf, "")
                        else:
                            # "file:function:line"
                            parts = leaf.rsplit(":", 2)
                            key = (short_function(parts[1]), os.path.basename(parts[0])) \
                                if len(parts) == 3 else (leaf, "")
                        leaves[key] += int(cnt)
                res["samples"] = n
        except (OSError, ValueError, KeyError, IndexError) as e:
            res["output_error"] = "%s: %s" % (type(e).__name__, e)
            res["log_tail"] = tail(stderr_path, 5)
        if strace_out:
            res["strace"] = parse_strace(strace_out)
        res["leaves"] = leaves
        if not keep:
            for fpath in (out, stderr_path, strace_out):
                if fpath and os.path.exists(fpath) and "log_tail" not in res:
                    os.unlink(fpath)
        rec = {k: v for k, v in res.items() if k != "leaves"}
        self.runs.append(rec)
        if res["exit"] not in (0, None) or "output_error" in res:
            log("  %s: exit %s %s %s" % (tool.name, res["exit"], res.get("output_error", ""),
                                         tail(stderr_path, 3)))
        return res

    def spawn_target(self, py, script, args, ready=True):
        path = py.path(script)
        argv = py.cmd + [path] + [str(x) for x in args]
        p = CHILDREN.spawn(argv, "target", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
        if ready:
            line = read_line(p, 60)
            if line is None or line.strip() != "ready":
                CHILDREN.kill(p)
                raise RuntimeError("target %s did not start (%r)" % (" ".join(argv), line))
        return p

    def spawn_benchmark(self, version, bm, extra=("-n", "100000")):
        py, bdir = self.pyperf[version]
        script = "%s/bm_%s/run_benchmark.py" % (bdir, bm)
        argv = py.cmd + [script, "--worker", "-l", "1", "-w", "0"] + list(extra)
        return CHILDREN.spawn(argv, "target", stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def order(self, items, rnd):
        """The tools in this round's order: reversed every other round."""
        return list(items) if rnd % 2 == 0 else list(reversed(items))

    # -- cpu: profiler CPU per sample ------------------------------------------------------

    def cpu_per_sample(self, tool, py, pid, short, long_):
        """µs of profiler CPU per sample at 1 kHz: the slope between a short and a long run
        (start-up not counted), or None."""
        r1 = self.profile(tool, py, pid, 1000, short)
        r2 = self.profile(tool, py, pid, 1000, long_)
        if r1.get("cpu_s") is None or r2.get("cpu_s") is None or not r1.get("samples") \
                or not r2.get("samples") or r2["samples"] <= r1["samples"]:
            return None
        return (r2["cpu_s"] - r1["cpu_s"]) / (r2["samples"] - r1["samples"]) * 1e6

    # A process that does nothing but sleep to 1 kHz deadlines: the CPU one wake-up costs
    # here (the kernel's timer, the switch in and out), which every sampler that wakes per
    # sample pays, whatever it then does. (perf stat's task-clock shows well under half of
    # it: the context switches around a wake-up are charged to the task's run time, but
    # are partly outside perf's counting window.)
    SLEEPER = ("import sys, time\n"
               "n = int(sys.argv[1]); t = time.monotonic()\n"
               "for _ in range(n):\n"
               "    t += 0.001\n"
               "    d = t - time.monotonic()\n"
               "    if d > 0: time.sleep(d)\n")

    def wake_floor(self, short, long_):
        """µs of CPU per wake-up of a loop that only sleeps, at 1 kHz (slope of two runs)."""
        cpu = []
        for secs in (short, long_):
            p = CHILDREN.spawn([sys.executable, "-c", self.SLEEPER, str(int(secs * 1000))],
                               "profiler", stdin=subprocess.DEVNULL)
            cpu.append(cpu_of(CHILDREN.reap(p, secs + 30)))
        if None in cpu:
            return None
        return (cpu[1] - cpu[0]) / ((long_ - short) * 1000) * 1e6

    def bench_cpu(self):
        a = self.a
        py = py315()
        tools = pyprof_tools() + [PYSPY_NB, PYSPY_BLK, PROFSAMP]
        workloads = [("spin.py, depth 20", "spin", 20), ("spin.py, depth 500", "spin", 500),
                     ("pyperformance raytrace", "bm", "raytrace")]
        short, long_ = (1.0, 3.0) if a.quick else (2.0, 6.0)
        per = {}   # (workload, tool name, mode) -> [µs per sample, one per round]
        floor = []  # µs per wake-up of a loop that only sleeps, one per round
        for rnd in range(a.rounds):
            for wl, kind, arg in workloads:
                if kind == "spin":
                    tgt = self.spawn_target(py, os.path.join(TARGETS, "spin.py"), [arg])
                else:
                    tgt = self.spawn_benchmark("3.15", arg)
                    time.sleep(1.5)
                try:
                    time.sleep(0.3)
                    for tool in self.order(tools, rnd):
                        us = self.cpu_per_sample(tool, py, tgt.pid, short, long_)
                        per.setdefault((wl, tool.name, tool.mode), []).append(us)
                        log("[cpu] round %d %s %s %s: %s µs/sample" % (
                            rnd, wl, tool.name, tool.mode, fmt(us)))
                    if arg == 20:
                        us = self.wake_floor(short, long_)
                        floor.append(us)
                        log("[cpu] round %d: a loop that only sleeps to 1 kHz deadlines: "
                            "%s µs/wake-up" % (rnd, fmt(us)))
                finally:
                    CHILDREN.kill(tgt)
        for wl, _, _ in workloads:
            for tool in tools:
                self.row("cpu", "profiler CPU per sample (1 kHz)", tool, wl, "3.15",
                         per.get((wl, tool.name, tool.mode), []), " µs")
        self.row("cpu", "CPU per wake-up of a loop that only sleeps (1 kHz): the floor "
                 "of any sampler that wakes per sample", "python3 time.sleep", "(no target)",
                 "%d.%d" % sys.version_info[:2], floor, " µs")
        # The goals, as ratios of paired runs (same round, same target).
        def ratios(wl, t, peer):
            xs = per.get((wl, t.name, t.mode), [])
            ys = per.get((wl, peer.name, peer.mode), [])
            return [x / y if x is not None and y else None for x, y in zip(xs, ys)]
        bpf, ptrace, read = pyprof_tools()
        for wl, depth_goal in (("spin.py, depth 20", True), ("spin.py, depth 500", False),
                               ("pyperformance raytrace", True)):
            self.row("cpu", "CPU per sample ÷ profiling.sampling's", bpf, wl, "3.15",
                     ratios(wl, bpf, PROFSAMP), "", ("<=", 0.1, "≤ 1/10"), ".3f")
            self.row("cpu", "CPU per sample ÷ profiling.sampling's", read, wl, "3.15",
                     ratios(wl, read, PROFSAMP), "",
                     ("<=", 1 / 3, "≤ 1/3") if depth_goal else None, ".3f")
            self.row("cpu", "CPU per sample ÷ py-spy's (non-blocking)", read, wl, "3.15",
                     ratios(wl, read, PYSPY_NB), "",
                     ("<=", 0.1, "≤ 1/10") if depth_goal else ("<=", 0.02, "≤ 1/50"), ".3f")
            self.row("cpu", "CPU per sample ÷ py-spy's (blocking)", ptrace, wl, "3.15",
                     ratios(wl, ptrace, PYSPY_BLK), "", None, ".3f")

    # -- native: CPU per sample with --native -------------------------------------------

    def bench_native(self):
        a = self.a
        py = py312()
        tools = [Tool("pyprof bpf", "pyprof", "bpf --native", ["--sampler", "bpf", "--native"]),
                 Tool("pyprof ptrace", "pyprof", "ptrace --native",
                      ["--sampler", "ptrace", "--native"]),
                 Tool("py-spy", "py-spy", "--native", ["--native"])]
        wl = "spin.py, depth 20"
        short, long_ = (1.0, 3.0) if a.quick else (2.0, 6.0)
        per = {}
        for rnd in range(a.rounds):
            tgt = self.spawn_target(py, os.path.join(TARGETS, "spin.py"), [20])
            try:
                time.sleep(0.3)
                for tool in self.order(tools, rnd):
                    us = self.cpu_per_sample(tool, py, tgt.pid, short, long_)
                    per.setdefault(tool.mode, []).append(us)
                    log("[native] round %d %s %s: %s µs/sample" % (rnd, tool.name, tool.mode,
                                                                    fmt(us)))
            finally:
                CHILDREN.kill(tgt)
        for tool in tools:
            self.row("native", "profiler CPU per sample with --native (1 kHz)", tool, wl,
                     "3.12", per.get(tool.mode, []), " µs")
        spy = per.get("--native", [])
        for tool in tools[:2]:
            xs = per.get(tool.mode, [])
            r = [x / y if x is not None and y else None for x, y in zip(xs, spy)]
            self.row("native", "CPU per sample with --native ÷ py-spy --native's", tool, wl,
                     "3.12", r, "", None, ".3f")

    # -- syscalls per tick -------------------------------------------------------------------

    def bench_syscalls(self):
        a = self.a
        py = py315()
        short, long_ = (1.0, 3.0) if a.quick else (2.0, 5.0)
        per, own = {}, {}
        for rnd in range(max(1, a.rounds // 2)):
            tgt = self.spawn_target(py, os.path.join(TARGETS, "spin.py"), [20])
            try:
                time.sleep(0.3)
                for tool in self.order(pyprof_tools(), rnd):
                    r1 = self.profile(tool, py, tgt.pid, 1000, short, strace=True)
                    r2 = self.profile(tool, py, tgt.pid, 1000, long_, strace=True)
                    v = None
                    if r1.get("strace") is not None and r2.get("strace") is not None \
                            and r2.get("ticks") and r1.get("ticks") and r2["ticks"] > r1["ticks"]:
                        v = (r2["strace"] - r1["strace"]) / (r2["ticks"] - r1["ticks"])
                    per.setdefault(tool.mode, []).append(v)
                    if r2.get("syscalls") is not None and r2.get("ticks"):
                        own.setdefault(tool.mode, []).append(r2["syscalls"] / r2["ticks"])
            finally:
                CHILDREN.kill(tgt)
        for tool in pyprof_tools():
            self.row("syscalls", "system calls per tick, besides the sleep (strace -c -f)",
                     tool, "spin.py, depth 20", "3.15", per.get(tool.mode, []), "",
                     ("<=", 3.0, "≤ 3"), ".2f")
            self.row("syscalls", "system calls per tick, as pyprof counts them", tool,
                     "spin.py, depth 20", "3.15", own.get(tool.mode, []), "", None, ".2f")

    # -- delivered ÷ requested -----------------------------------------------------------

    def delivered(self, tool, py, pid, rate, dur):
        """Samples delivered ÷ requested. py-spy's -d is a sample count (rate × seconds:
        it runs longer when it falls behind), so it is given a long -d and stopped with
        SIGINT after `dur` (it writes what it has). bpf samples a thread when it is on a
        CPU: its request is the rate times the CPU time the target had (on a busy
        machine less than the wall time)."""
        cpu0 = proc_cpu(pid)
        if tool.kind == "py-spy":
            h = self.start_profile(tool, py, pid, rate, dur * 20)
            time.sleep(dur)
            CHILDREN.stop(h["p"], signal.SIGINT, 30)
            r = self.finish_profile(h, 5)
            window = dur
        else:
            r = self.profile(tool, py, pid, rate, dur)
            window = r.get("duration_secs") or dur
        cpu = None if cpu0 is None or proc_cpu(pid) is None else proc_cpu(pid) - cpu0
        r["target_cpu_s"] = cpu
        if not r.get("samples"):
            return None, r
        # (pyprof's own reading of the target's CPU clock over the sampling window is
        # exact; /proc's is in clock ticks and includes the attach.)
        cpu = r.get("target_cpu_secs") or cpu
        if tool.mode == "bpf" and cpu is not None and cpu > 0:
            window = min(window, cpu)
        return r["samples"] / (rate * window), r

    def bench_delivered(self):
        a = self.a
        py = py315()
        dur = 2.0 if a.quick else 5.0
        tools = pyprof_tools() + [PYSPY_NB, PROFSAMP]
        per = {}
        for rnd in range(a.rounds):
            tgt = self.spawn_target(py, os.path.join(TARGETS, "spin.py"), [50])
            try:
                time.sleep(0.3)
                for rate in (1000, 10000, 50000):
                    for tool in self.order(tools, rnd):
                        v, _ = self.delivered(tool, py, tgt.pid, rate, dur)
                        per.setdefault((rate, tool.name, tool.mode), []).append(v)
            finally:
                CHILDREN.kill(tgt)
        for rate in (1000, 10000, 50000):
            for tool in tools:
                goal = (">=", 99.0, "≥ 99%") if rate == 10000 and tool.mode == "bpf" else None
                xs = [None if x is None else x * 100 for x in
                      per.get((rate, tool.name, tool.mode), [])]
                self.row("delivered", "delivered ÷ requested at %d Hz" % rate, tool,
                         "spin.py, depth 50", "3.15", xs, "%", goal)

    def bench_threads(self):
        a = self.a
        py = py312()
        dur = 3.0 if a.quick else 6.0
        tools = pyprof_tools() + [PYSPY_NB]
        deliv, cpu = {}, {}
        for rnd in range(a.rounds):
            tgt = self.spawn_target(py, os.path.join(TEST_SCRIPTS, "many_threads.py"), [1000])
            try:
                time.sleep(1.0)
                for tool in self.order(tools, rnd):
                    v, r = self.delivered(tool, py, tgt.pid, 100, dur)
                    deliv.setdefault(tool.name + tool.mode, []).append(
                        None if v is None else v * 100)
                    window = r.get("duration_secs") or dur
                    cpu.setdefault(tool.name + tool.mode, []).append(
                        None if r.get("cpu_s") is None else r["cpu_s"] / window * 100)
            finally:
                CHILDREN.kill(tgt)
        for tool in tools:
            k = tool.name + tool.mode
            self.row("threads", "1,000 sleeping + 1 busy thread, 100 Hz: delivered ÷ requested",
                     tool, "many_threads.py", "3.12", deliv.get(k, []), "%",
                     (">=", 99.0, "≥ 99%") if tool.kind == "pyprof" else None)
            self.row("threads", "1,000 sleeping + 1 busy thread, 100 Hz: profiler CPU",
                     tool, "many_threads.py", "3.12", cpu.get(k, []), "% of a core",
                     ("<=", 5.0, "≤ 5%") if tool.mode in ("ptrace", "read") else None)

    # -- slowdown ----------------------------------------------------------------------------

    def timed_raytrace(self, tool, rate, n):
        """pyperformance raytrace on 3.12, `n` timed runs: their median, and the profiler."""
        out = os.path.join(self.work, "rt-%d.json" % random.randrange(1 << 30))
        p = self.spawn_benchmark("3.12", "raytrace", ["-n", str(n), "-o", out])
        h = None
        if tool is not None:
            time.sleep(0.15)
            h = self.start_profile(tool, py312(), p.pid, rate, 3600)  # ends with the target
        ru = CHILDREN.reap(p, 600)
        prof = None if h is None else self.finish_profile(h, 60)
        try:
            with open(out) as f:
                d = json.load(f)
            values = [v for r in d["benchmarks"][0]["runs"] for v in r.get("values", [])]
        except (OSError, ValueError, KeyError, IndexError):
            values = []
        finally:
            if os.path.exists(out):
                os.unlink(out)
        # The first value may have run before the profiler was attached.
        return (median(values[1:]) if len(values) > 1 else None), prof, cpu_of(ru)

    def timed_work(self, tool, rate, iterations):
        """The toy work.py (fixed work, timed by itself), alone or under `tool`."""
        py = py312()
        tgt = self.spawn_target(py, os.path.join(TARGETS, "work.py"), [iterations, 20])
        h = None
        try:
            if tool is not None:
                h = self.start_profile(tool, py, tgt.pid, rate, 3600)
                time.sleep(0.7)
            tgt.stdin.write(b"go\n")
            tgt.stdin.flush()
            line = read_line(tgt, 600)
            if line is None or not line.startswith("elapsed "):
                raise RuntimeError("work.py said %r" % line)
            return float(line.split()[1])
        finally:
            CHILDREN.kill(tgt)
            if h is not None:
                self.finish_profile(h, 60)

    def calibrate_work(self, seconds):
        n = 200000
        for _ in range(6):
            t = self.timed_work(None, None, n)
            if t >= 0.4:
                break
            n *= 4
        return max(1, int(n * seconds / t))

    def bench_slowdown(self):
        a = self.a
        n = 6 if a.quick else 14
        rt_configs = [None] + [(t, 1000) for t in pyprof_tools()] + \
            [(PYSPY_NB, 1000), (PYSPY_BLK, 1000)] + \
            [(pyprof_tools()[0], 100), (pyprof_tools()[1], 100)]
        per = {}
        rng = random.Random(1234)
        for rnd in range(a.rounds):
            order = list(rt_configs)
            rng.shuffle(order)
            # "alone" is run twice per round, first and last, for a steadier baseline
            order = [None] + [c for c in order if c is not None] + [None]
            for cfg in order:
                tool, rate = (None, None) if cfg is None else cfg
                med, prof, _ = self.timed_raytrace(tool, rate, n)
                key = "alone" if cfg is None else "%s|%s|%d" % (tool.name, tool.mode, rate)
                per.setdefault(key, []).append((rnd, med))
                log("[slowdown] round %d %s: %s s per raytrace run" % (rnd, key, fmt(med, ".4f")))
        alone_by_round = {}
        for rnd, med in per.get("alone", []):
            if med is not None:
                alone_by_round.setdefault(rnd, []).append(med)
        base = {r: statistics.median(v) for r, v in alone_by_round.items()}
        alone = [m for _, m in per.get("alone", []) if m is not None]
        self.row("slowdown", "the workload alone: spread of its own runs (max−min ÷ median)",
                 "none", "pyperformance raytrace", "3.12",
                 [(max(alone) - min(alone)) / statistics.median(alone) * 100] if alone else [],
                 "%", None, ".2f")
        for cfg in rt_configs[1:]:
            tool, rate = cfg
            key = "%s|%s|%d" % (tool.name, tool.mode, rate)
            xs = [(m / base[r] - 1) * 100 for r, m in per.get(key, [])
                  if m is not None and r in base]
            goal = None
            if rate == 1000 and tool.mode == "bpf":
                goal = ("<=", 1.0, "≤ 1%")
            elif rate == 1000 and tool.mode == "ptrace":
                goal = ("<=", 3.0, "≤ 3%")
            self.row("slowdown", "target slowdown at %d Hz" % rate, tool,
                     "pyperformance raytrace", "3.12", xs, "%", goal, "+.2f")
        # The toy beside it (what earlier figures were measured on).
        iters = self.calibrate_work(1.5 if a.quick else 3.0)
        toy = [None, (pyprof_tools()[0], 1000), (pyprof_tools()[1], 1000), (PYSPY_BLK, 1000)]
        tper = {}
        for rnd in range(a.rounds):
            order = [None] + self.order(toy[1:], rnd) + [None]
            for cfg in order:
                tool, rate = (None, None) if cfg is None else cfg
                try:
                    t = self.timed_work(tool, rate, iters)
                except RuntimeError as e:
                    log("[slowdown] %s" % e)
                    t = None
                key = "alone" if cfg is None else "%s|%s|%d" % (tool.name, tool.mode, rate)
                tper.setdefault(key, []).append((rnd, t))
        tbase = {}
        for rnd, t in tper.get("alone", []):
            if t is not None:
                tbase.setdefault(rnd, []).append(t)
        tbase = {r: statistics.median(v) for r, v in tbase.items()}
        for cfg in toy[1:]:
            tool, rate = cfg
            key = "%s|%s|%d" % (tool.name, tool.mode, rate)
            xs = [(t / tbase[r] - 1) * 100 for r, t in tper.get(key, [])
                  if t is not None and r in tbase]
            self.row("slowdown", "target slowdown at %d Hz" % rate, tool,
                     "work.py (toy, depth 20)", "3.12", xs, "%", None, "+.2f")

    # -- accuracy on real code ---------------------------------------------------------

    def bench_accuracy(self):
        a = self.a
        secs = 2.0 if a.quick else 3.0
        rounds = 1 if a.quick else 2
        benchmarks = BENCHMARKS[:2] if a.quick else BENCHMARKS
        bpf, ptrace, read = pyprof_tools()
        for version in ("3.12", "3.15"):
            if version not in self.pyperf:
                self.errors["accuracy %s" % version] = "pyperformance not installed"
                continue
            py = self.pyperf[version][0]
            peers = [bpf, read, PYSPY_NB] + ([PROFSAMP] if version == "3.15" else [])
            for bm in benchmarks:
                p = self.spawn_benchmark(version, bm)
                try:
                    time.sleep(1.5)
                    ref_halves = [Counter(), Counter()]
                    got = {t.name + t.mode: Counter() for t in peers}
                    failed = {t.name + t.mode: [0, 0] for t in peers}
                    for rnd in range(rounds):
                        for k, tool in enumerate(self.order([ptrace] + peers + [ptrace], rnd)):
                            r = self.profile(tool, py, p.pid, 1000, secs)
                            if tool is ptrace:
                                ref_halves[k == 0].update(r["leaves"])
                            else:
                                got[tool.name + tool.mode].update(r["leaves"])
                                f = failed[tool.name + tool.mode]
                                f[0] += r.get("errors") or 0
                                f[1] += r.get("samples") or 0
                finally:
                    CHILDREN.kill(p)
                ref = ref_halves[0] + ref_halves[1]
                # The noise floor: the two halves of the reference against each other.
                self.row("accuracy", "TVD of leaf functions vs a frozen profile", "pyprof ptrace "
                         "(half vs half)", "pyperformance %s" % bm, version,
                         [tvd(ref_halves[0], ref_halves[1])], "", None, ".3f",
                         "%d samples each" % (sum(ref_halves[0].values())))
                for tool in peers:
                    k = tool.name + tool.mode
                    goal = ("<=", 0.05, "≤ 0.05") if tool.mode == "bpf" else None
                    n = sum(got[k].values())
                    self.row("accuracy", "TVD of leaf functions vs a frozen profile", tool,
                             "pyperformance %s" % bm, version,
                             [tvd(ref, got[k])] if n else [], "", goal, ".3f",
                             "%d samples (%d failed), reference %d" % (
                                 n, failed[k][0], sum(ref.values())))

    # -- a program in step with the sampling rate -----------------------------------------

    def bench_aliasing(self):
        """tests/scripts/in_step.py spends the first quarter of every 1/250 s in `short`,
        the rest in `long`, timed by the clock: a profiler sampling at exactly equal
        intervals of 1/250 s lands on the same point of every cycle and reports 0% or
        100% of `short`. The measure: how far from 25% each profiler's share is."""
        a = self.a
        py = py315()
        rate = 250
        dur = 2.0 if a.quick else 4.0
        tools = pyprof_tools() + [PYSPY_NB, PYSPY_BLK, PROFSAMP]
        per = {}
        for rnd in range(a.rounds):
            # A new target each round: a new phase of its cycle against the profilers'.
            tgt = self.spawn_target(py, os.path.join(TEST_SCRIPTS, "in_step.py"), [rate])
            try:
                time.sleep(0.3)
                for tool in self.order(tools, rnd):
                    r = self.profile(tool, py, tgt.pid, rate, dur)
                    leaves = r.get("leaves") or Counter()
                    short = sum(n for (f, _), n in leaves.items() if f == "short")
                    long_ = sum(n for (f, _), n in leaves.items() if f == "long")
                    entry = per.setdefault(tool.name + "|" + tool.mode, (tool, []))
                    if short + long_ >= 50:
                        entry[1].append(100.0 * short / (short + long_))
            finally:
                CHILDREN.kill(tgt)
        for tool, shares in per.values():
            self.row("aliasing", "share of `short` (truth 25%%) at %d Hz: distance" % rate, tool,
                     "in_step.py (a 4 ms cycle)", "3.15", [abs(x - 25.0) for x in shares],
                     " points", ("<=", 5.0, "≤ 5 points") if tool.kind == "pyprof" else None,
                     ".1f", "shares: " + ", ".join("%.0f%%" % x for x in shares))

    # -- peak RSS ------------------------------------------------------------------------

    def bench_rss(self):
        a = self.a
        secs = a.long_seconds
        py = py312()
        tgt = self.spawn_target(py, os.path.join(TARGETS, "varied.py"), [])
        try:
            time.sleep(0.3)
            hs = [self.start_profile(t, py, tgt.pid, 1000, secs)
                  for t in (pyprof_tools()[0], PYSPY_NB)]
            results = [self.finish_profile(h, secs + 300) for h in hs]
        finally:
            CHILDREN.kill(tgt)
        for r, tool in zip(results, (pyprof_tools()[0], PYSPY_NB)):
            self.row("rss", "peak RSS after %d s at 1 kHz" % secs, tool,
                     "varied.py (thousands of distinct stacks)", "3.12",
                     [None if r["maxrss_kb"] is None else r["maxrss_kb"] / 1000.0], " MB",
                     ("<=", 30.0, "≤ 30 MB") if tool.kind == "pyprof" else None, ".1f",
                     "%s samples, %s distinct stacks" % (r.get("samples"),
                                                          r.get("distinct_stacks")))

    # -- rendering -------------------------------------------------------------------------

    def bench_render(self):
        a = self.a
        py = py312()
        secs = 3 if a.quick else 10
        tgt = self.spawn_target(py, os.path.join(TARGETS, "varied.py"), [])
        try:
            time.sleep(0.3)
            r = self.profile(Tool("pyprof", "pyprof", "bpf", ["--opcodes"]), py, tgt.pid,
                             2000, secs, keep=True)
        finally:
            CHILDREN.kill(tgt)
        src = r["argv"][r["argv"].index("-o") + 1]
        with open(src) as f:
            d = json.load(f)
        total = sum(s["count"] for s in d["stacks"]) or 1
        k = max(1, math.ceil(1000000 / total))
        for s in d["stacks"]:
            s["count"] *= k
        for ins in d.get("instructions", []):
            ins["samples"] *= k
        d["meta"]["samples"] = sum(s["count"] for s in d["stacks"])
        big = os.path.join(self.work, "big.json")
        with open(big, "w") as f:
            json.dump(d, f)
        for fmt_, what in (("flamegraph", "SVG"), ("opcodes", "opcode report")):
            xs = []
            for _ in range(a.rounds):
                t0 = time.monotonic()
                rr = run_cmd([self.pyprof, "report", big, "-f", fmt_, "-o",
                              os.path.join(self.work, "big." + fmt_)])
                xs.append(time.monotonic() - t0 if rr.returncode == 0 else None)
            self.row("render", "render %s from %s samples" % (what, d["meta"]["samples"]),
                     "pyprof", "varied.py", "3.12", xs, " s", ("<=", 1.0, "< 1 s"), ".3f")

    # -- output ----------------------------------------------------------------------------

    def markdown(self, meta):
        L = ["# pyprof bench", "",
             "`%s` — %s, %s; build: %s" % (meta["command"], meta["started_at"],
                                          meta["elapsed_human"], self.build),
             "", "Machine: %s" % meta["machine"], "",
             "Rows: median (min–max, n runs). A goal is **PASS** when the bootstrap 90% "
             "interval of the median is on its side of the bound, **FAIL** when it is on "
             "the other, else within noise.", ""]
        for section in self.a.sections:
            rows = [r for r in self.rows if r["section"] == section]
            if not rows and section not in self.errors:
                continue
            L += ["## " + section, ""]
            if section in self.errors:
                L += ["(section failed: %s)" % self.errors[section], ""]
            L.append("| measure | tool | mode | workload | Python | median | min–max | n | goal | result |")
            L.append("|---|---|---|---|---|---:|---|---:|---|---|")
            for r in rows:
                f_ = r["fmt"]
                L.append("| %s | %s | %s | %s | %s | %s%s | %s–%s | %d | %s | %s |" % (
                    r["measure"] + (" (%s)" % r["note"] if r["note"] else ""), r["tool"],
                    r["mode"], r["workload"], r["python"], fmt(r["median"], f_), r["unit"],
                    fmt(r["min"], f_), fmt(r["max"], f_), r["n"], r["goal"], r["verdict"]))
            L.append("")
        for k, v in self.errors.items():
            if k not in self.a.sections:
                L.append("- %s: %s" % (k, v))
        return "\n".join(L) + "\n"

    def readme_table(self):
        """The rows with a goal, for README.md's performance table."""
        L = ["| measure | tool (mode) | workload | Python | median (min–max, n) | goal | result |",
             "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            if not r["goal"]:
                continue
            f_ = r["fmt"]
            # (The trailing `<!-- section -->` cell is past the header's columns: not
            # shown; a later run of other sections keeps this row.)
            L.append("| %s | %s (%s) | %s | %s | %s%s (%s–%s, %d) | %s | %s | <!-- %s -->" % (
                r["measure"], r["tool"], r["mode"], r["workload"], r["python"],
                fmt(r["median"], f_), r["unit"], fmt(r["min"], f_), fmt(r["max"], f_),
                r["n"], r["goal"], r["verdict"], r["section"]))
        return "\n".join(L) + "\n"


def tvd(a, b):
    na, nb = sum(a.values()) or 1, sum(b.values()) or 1
    return 0.5 * sum(abs(a.get(k, 0) / na - b.get(k, 0) / nb) for k in set(a) | set(b))


def parse_strace(path):
    """System calls in an `strace -c` summary, without the sleeps and waits between ticks
    and the calls strace attributes to the profiler's own exit."""
    skip = {"clock_nanosleep", "nanosleep", "futex", "exit_group", "restart_syscall"}
    total = 0
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] not in skip \
                        and parts[-1] != "total":
                    # % time, seconds, usecs/call, calls, [errors], syscall
                    calls = int(parts[3])
                    total += calls
    except (OSError, ValueError):
        return None
    return total


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short runs, fewer rounds")
    ap.add_argument("--rounds", type=int, default=None,
                    help="alternating rounds of every comparison (default 5, quick 2)")
    ap.add_argument("--skip-long", action="store_true", help="leave out the long RSS run")
    ap.add_argument("--long-seconds", type=int, default=None,
                    help="length of the RSS run (default 600, quick 20)")
    ap.add_argument("--only", default=None, help="comma-separated sections (see above)")
    ap.add_argument("--pyprof", default=os.path.join(ROOT, "target", "release", "pyprof"))
    ap.add_argument("--py-spy", dest="py_spy",
                    default=os.path.join(ROOT, "target", "bench-venv", "bin", "py-spy"))
    ap.add_argument("--no-build", action="store_true",
                    help="use the existing pyprof binary (default: cargo build --release)")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "target", "bench"))
    ap.add_argument("--update-readme", action="store_true",
                    help="replace README.md's measured table with this run's")
    a = ap.parse_args()
    a.rounds = a.rounds or (2 if a.quick else 5)
    a.long_seconds = a.long_seconds or (20 if a.quick else 600)
    sections = ["cpu", "native", "syscalls", "delivered", "threads", "slowdown", "accuracy", "aliasing",
                "rss", "render"]
    if a.only:
        want = [x.strip() for x in a.only.split(",") if x.strip()]
        bad = [x for x in want if x not in sections]
        if bad:
            ap.error("unknown section(s): %s" % ", ".join(bad))
        sections = [x for x in sections if x in want]
    if a.skip_long and "rss" in sections:
        sections.remove("rss")
    a.sections = sections
    return a


def setup(a):
    if not a.no_build:
        log("[setup] cargo build --release")
        if subprocess.run(["cargo", "build", "--release"], cwd=ROOT).returncode != 0:
            sys.exit("bench: cargo build --release failed")
    if not os.access(a.pyprof, os.X_OK):
        sys.exit("bench: no pyprof binary at %s" % a.pyprof)
    git = run_cmd(["git", "-C", ROOT, "describe", "--always", "--dirty"])
    a.build_label = "release %s" % (git.stdout.strip() or "?")
    if not os.access(a.py_spy, os.X_OK):
        venv = os.path.dirname(os.path.dirname(a.py_spy))
        log("[setup] installing py-spy %s into %s" % (PYSPY_VERSION, venv))
        subprocess.run([py312().cmd[0], "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q",
                        "py-spy==%s" % PYSPY_VERSION], check=True)
    if os.path.isdir(os.path.join(SID, "proc")) and \
            run_cmd(["mountpoint", "-q", os.path.join(SID, "proc")]).returncode != 0:
        run_cmd(["mount", "-t", "proc", "proc", os.path.join(SID, "proc")])
    # The bpf program's own CPU time counts as the profiler's: ask the kernel to keep it.
    a.bpf_stats_old = None
    try:
        with open("/proc/sys/kernel/bpf_stats_enabled") as f:
            a.bpf_stats_old = f.read().strip()
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write("1")
    except OSError as e:
        log("[setup] cannot enable kernel.bpf_stats_enabled (%s): bpf CPU rows leave out "
            "the in-kernel time" % e)


def restore(a):
    if a.bpf_stats_old is not None:
        try:
            with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
                f.write(a.bpf_stats_old)
        except OSError:
            pass


def machine():
    info = {"platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def human(secs):
    m, s = divmod(int(round(secs)), 60)
    return "%d min %02d s" % (m, s) if m else "%d s" % s


def proc_cpu(pid):
    """CPU seconds of process `pid` (all its threads) from /proc, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def update_readme(table, sections, stamp):
    """Replace the rows of `sections` in README.md's table (between the bench markers)
    with this run's; rows of the sections not run stay, in section order. `stamp` (the
    command and date) is kept per section under the table."""
    path = os.path.join(ROOT, "README.md")
    with open(path) as f:
        text = f.read()
    start, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    if start not in text or end not in text:
        log("bench: README.md has no %s ... %s markers: not updated" % (start, end))
        return
    head, rest = text.split(start, 1)
    old, tail_ = rest.split(end, 1)
    mark = re.compile(r"<!-- (\w+) -->(?:<br>)?\s*$")
    keep, stamps = {}, {}
    for line in old.splitlines():
        m = mark.search(line)
        if m and m.group(1) not in sections:
            if line.startswith("|"):
                keep.setdefault(m.group(1), []).append(line)
            else:
                stamps[m.group(1)] = re.sub(r"<br>\s*$", "", line)
    new_rows = {}
    lines = table.splitlines()
    header, rows = lines[:2], lines[2:]
    for line in rows:
        m = mark.search(line)
        new_rows.setdefault(m.group(1) if m else "", []).append(line)
    for sec in sections:
        stamps[sec] = "Rows of `%s`: %s <!-- %s -->" % (sec, stamp, sec)
    order = ["cpu", "syscalls", "delivered", "threads", "slowdown", "accuracy", "aliasing",
             "rss", "render"]
    body = list(header)
    for sec in order + sorted((set(keep) | set(new_rows)) - set(order) - {""}):
        body.extend(new_rows.get(sec, []) if sec in sections else keep.get(sec, []))
    notes = [stamps[sec] + "<br>" for sec in order if sec in stamps]
    with open(path, "w") as f:
        f.write(head + start + "\n" + "\n".join(body) + "\n\n" + "\n".join(notes) + "\n"
                + end + tail_)
    log("bench: README.md table updated")


def main():
    a = parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    command = "python3 scripts/bench.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    t_start = time.monotonic()
    setup(a)
    b = Bench(a)
    inst = run_cmd(["bash", os.path.join(ROOT, "scripts", "install-pyperformance.sh")])
    for line in inst.stdout.splitlines():
        m = re.match(r"pyperformance (\S+): (.*)$", line)
        if m:
            cmd = m.group(2).split()
            py = Python(m.group(1), cmd, root=SID if cmd[0] == "chroot" else None)
            lib = cmd[-1][:-len("/bin/python")]
            b.pyperf[m.group(1)] = (py, "%s/lib/python%s/site-packages/pyperformance/"
                                        "data-files/benchmarks" % (lib, m.group(1)))
    meta = {"command": command, "started_at": started, "machine": machine(),
            "sections": a.sections, "rounds": a.rounds, "build": a.build_label,
            "busy_before_pct": cpu_busy()}
    log("[setup] %s; CPU busy before: %s%%" % (json.dumps(meta["machine"]),
                                              fmt(meta["busy_before_pct"], ".0f")))
    interrupted = None
    try:
        for sec in a.sections:
            t0 = time.monotonic()
            try:
                getattr(b, "bench_" + sec)()
            except Exception:
                tb = traceback.format_exc()
                log(tb)
                b.errors[sec] = tb.strip().splitlines()[-1]
                CHILDREN.cleanup()
            log("[%s] done in %s" % (sec, human(time.monotonic() - t0)))
    except KeyboardInterrupt as e:
        interrupted = "interrupted (%s)" % (str(e) or "Ctrl-C")
    finally:
        CHILDREN.cleanup()
        restore(a)
    elapsed = time.monotonic() - t_start
    meta["elapsed_s"] = elapsed
    meta["elapsed_human"] = human(elapsed) + (" — " + interrupted if interrupted else "")
    meta["busy_after_pct"] = None if interrupted else cpu_busy()
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "results.json"), "w") as f:
        json.dump({"meta": meta, "rows": b.rows, "errors": b.errors, "runs": b.runs}, f,
                  indent=1, default=str)
    md = b.markdown(meta)
    with open(os.path.join(a.out_dir, "results.md"), "w") as f:
        f.write(md)
    table = b.readme_table()
    with open(os.path.join(a.out_dir, "readme-table.md"), "w") as f:
        f.write(table)
    if a.update_readme and not interrupted:
        update_readme(table, a.sections, "`%s`, %s, %s" % (command, started, meta.get(
            "elapsed_human", "")))
    print(md)
    log("bench: wrote %s (%s)" % (os.path.join(a.out_dir, "results.md"), human(elapsed)))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
