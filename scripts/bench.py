#!/usr/bin/env python3
"""pyprof vs py-spy, side by side, on this machine.

    python3 scripts/bench.py --quick         # smoke test, about 2-3 minutes
    python3 scripts/bench.py                 # full: ~13 minutes + a 10-minute RSS run
    python3 scripts/bench.py --skip-long     # full without the 10-minute RSS run

Both profilers are run alternately on the same target programs
(scripts/bench_targets/), several repetitions each, and compared by their medians:

  1. profiler CPU seconds (user+sys, from wait4) per sample written, stack depth 20 and
     500, blocking and non-blocking, 1 kHz requested
  2. delivered / requested samples at 1, 10 and 50 kHz (depth 50, non-blocking)
  3. target slowdown: the target's own wall time for a fixed amount of work, alone vs
     under each profiler at 100 Hz and 1 kHz, blocking and non-blocking (interleaved)
  4. profiler peak RSS (ru_maxrss) after a long run at 1 kHz (both profilers attached at
     once, non-blocking, to a target with thousands of distinct stacks)
  5. pyprof only: time to render an SVG and an opcode report from a profile scaled to
     >= 1,000,000 samples
  6. pyprof only: memory reads (process_vm_readv calls) per tick, and the CPU that
     --opcodes adds per sample

Writes target/bench/results.json (every run, raw) and target/bench/results.md (the
Markdown printed at the end). py-spy is installed from PyPI into target/bench-venv if
it is not there. Every process started here is killed on exit, error or Ctrl-C.
"""
import argparse
import atexit
import datetime
import json
import math
import os
import platform
import random
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = os.path.join(ROOT, "scripts", "bench_targets")
DEFAULT_PYTHON = "/root/.pyenv/versions/3.12.1/bin/python"
TOOLS = ("pyprof", "py-spy")

# pyprof's goals, checked in the summary
GOAL_CPU_RATIO = 0.10        # CPU per sample at depth 500 <= 1/10 of py-spy's
GOAL_DELIVERED_10K = 0.95    # >= 95% of requested samples at 10 kHz, depth 50
GOAL_SLOW_NB_100 = 0.5       # % slowdown at 100 Hz, non-blocking
GOAL_SLOW_BLK_100 = 3.0      # % slowdown at 100 Hz, blocking
GOAL_RSS_MB = 30.0           # peak RSS after 10 min at 1 kHz, MB (10^6 bytes)
GOAL_RSS_SECONDS = 600
GOAL_RENDER_S = 1.0          # render 1M samples
GOAL_OPCODES_PCT = 10.0      # CPU per sample added by --opcodes


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
# The bench

class Bench:
    def __init__(self, args):
        self.a = args
        self.py = args.python
        self.pyprof = args.pyprof
        self.pyspy = args.py_spy
        self.out_dir = args.out_dir
        self.work_dir = os.path.join(self.out_dir, "work")
        os.makedirs(self.work_dir, exist_ok=True)
        self.runs = []        # every run, raw
        self.summary = {}
        self.errors = {}      # section -> error
        self.seq = 0

    # -- profilers ----------------------------------------------------------------------

    def profiler_argv(self, tool, pid, rate, duration, blocking, opcodes, fmt_, out):
        if tool == "pyprof":
            argv = [self.pyprof, "record", "-p", str(pid), "-r", str(rate),
                    "-d", str(duration), "-f", fmt_ or "json", "-o", out]
            if opcodes:
                argv.append("--opcodes")
        else:
            if opcodes:
                raise ValueError("py-spy has no --opcodes")
            # py-spy takes whole seconds
            argv = [self.pyspy, "record", "-p", str(pid), "-r", str(rate),
                    "-d", str(int(math.ceil(duration))), "-f", "raw", "-o", out]
        if not blocking:
            argv.append("--nonblocking")
        return argv

    def start_profiler(self, tool, pid, rate, duration, blocking, opcodes=False, fmt_=None,
                       pipe_stdout=False):
        self.seq += 1
        ext = "json" if tool == "pyprof" and (fmt_ or "json") == "json" else "txt"
        out = os.path.join(self.work_dir, "%s-%d.%s" % (tool, self.seq, ext))
        logp = os.path.join(self.work_dir, "%s-%d.log" % (tool, self.seq))
        for f in (out, logp):
            if os.path.exists(f):
                os.unlink(f)
        argv = self.profiler_argv(tool, pid, rate, duration, blocking, opcodes, fmt_, out)
        logf = open(logp, "wb")
        try:
            p = CHILDREN.spawn(argv, "profiler", stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE if pipe_stdout else logf,
                               stderr=logf if pipe_stdout else subprocess.STDOUT)
        finally:
            logf.close()
        p._bench = {"argv": argv, "out": out, "log": logp, "tool": tool, "t0": time.monotonic()}
        return p

    def finish_profiler(self, p, timeout, keep_output=False):
        ru = CHILDREN.reap(p, timeout)
        timed_out = ru is None
        if timed_out:
            ru = CHILDREN.stop(p, signal.SIGINT, 10.0)
        info = p._bench
        res = {
            "tool": info["tool"],
            "argv": info["argv"],
            "exit": p.returncode,
            "timed_out": timed_out,
            "wall_s": time.monotonic() - info["t0"],
            "cpu_user_s": None if ru is None else ru.ru_utime,
            "cpu_sys_s": None if ru is None else ru.ru_stime,
            "cpu_s": cpu_of(ru),
            "maxrss_kb": None if ru is None else ru.ru_maxrss,
            "samples": None,
        }
        out = info["out"]
        try:
            if info["tool"] == "pyprof" and out.endswith(".json"):
                with open(out) as f:
                    d = json.load(f)
                m = d.get("meta", {})
                res["samples"] = m.get("samples")
                for k in ("ticks", "late", "errors", "memory_reads", "duration_secs", "mode",
                          "opcodes"):
                    res[k] = m.get(k)
                res["distinct_stacks"] = len(d.get("stacks", []))
            else:
                n = 0
                lines = 0
                with open(out, errors="replace") as f:
                    for line in f:
                        line = line.rstrip("\n")
                        if not line:
                            continue
                        head, _, cnt = line.rpartition(" ")
                        if head and cnt.isdigit():
                            n += int(cnt)
                            lines += 1
                res["samples"] = n
                res["distinct_stacks"] = lines
        except (OSError, ValueError) as e:
            res["output_error"] = "%s: %s" % (type(e).__name__, e)
        if p.returncode != 0 or "output_error" in res:
            res["log_tail"] = tail(info["log"], 5)
        if res["cpu_s"] is not None and res["samples"]:
            res["cpu_us_per_sample"] = res["cpu_s"] / res["samples"] * 1e6
        else:
            res["cpu_us_per_sample"] = None
        if not keep_output:
            for f in (out, info["log"]):
                if os.path.exists(f) and "log_tail" not in res:
                    os.unlink(f)
        else:
            res["output"] = out
        return res

    # -- targets ------------------------------------------------------------------------

    def start_target(self, script, args, stdin=False, ready_timeout=30.0):
        argv = [self.py, os.path.join(TARGETS, script)] + [str(a) for a in args]
        p = CHILDREN.spawn(argv, "target",
                           stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = read_line(p, ready_timeout)
        if line is None or line.strip() != "ready":
            CHILDREN.kill(p)
            raise RuntimeError("target %s did not start (got %r)" % (" ".join(argv), line))
        return p

    # -- 1 + 6: CPU per sample, memory reads per tick ----------------------------------

    def bench_cpu(self):
        a = self.a
        reps, dur, rate = a.reps, a.cpu_seconds, 1000
        configs = []
        for depth in (20, 500):
            for blocking in (False, True):
                for tool in TOOLS:
                    configs.append((tool, depth, blocking, False))
            configs.append(("pyprof", depth, False, True))   # --opcodes, non-blocking
        total = reps * len(configs)
        i = 0
        for rep in range(reps):
            # alternate: the order of tools flips every repetition, and so does the order
            # of the configurations
            order = configs if rep % 2 == 0 else list(reversed(configs))
            for tool, depth, blocking, opcodes in order:
                i += 1
                tgt = self.start_target("spin.py", [depth])
                try:
                    time.sleep(0.3)
                    p = self.start_profiler(tool, tgt.pid, rate, dur, blocking, opcodes)
                    res = self.finish_profiler(p, dur + 60)
                finally:
                    CHILDREN.kill(tgt)
                res.update(section="cpu", rep=rep, depth=depth, rate=rate, duration=dur,
                           blocking=blocking, opcodes=opcodes)
                self.runs.append(res)
                log("[cpu %d/%d] %-6s depth=%-3d %-11s%s: %s us/sample, %s samples, "
                    "maxrss %s kB%s" % (
                        i, total, tool, depth, "blocking" if blocking else "nonblocking",
                        " +opcodes" if opcodes else "", fmt(res["cpu_us_per_sample"]),
                        res["samples"], res["maxrss_kb"],
                        "" if res["exit"] == 0 else " EXIT %s %s" % (res["exit"],
                                                                    res.get("log_tail"))))

        def sel(tool, depth, blocking, opcodes=False):
            return [r for r in self.runs if r["section"] == "cpu" and r["tool"] == tool
                    and r["depth"] == depth and r["blocking"] == blocking
                    and r["opcodes"] == opcodes]

        cpu = {}
        for tool, depth, blocking, opcodes in configs:
            rs = sel(tool, depth, blocking, opcodes)
            key = "%s/d%d/%s%s" % (tool, depth, "blocking" if blocking else "nonblocking",
                                   "+opcodes" if opcodes else "")
            ent = {
                "cpu_us_per_sample": median([r["cpu_us_per_sample"] for r in rs]),
                "samples": median([r["samples"] for r in rs]),
                "maxrss_kb": median([r["maxrss_kb"] for r in rs]),
                "n": len(rs),
                "all_cpu_us_per_sample": [r["cpu_us_per_sample"] for r in rs],
            }
            if tool == "pyprof":
                per_tick = [r["memory_reads"] / r["ticks"] for r in rs
                            if r.get("memory_reads") is not None and r.get("ticks")]
                ent["memory_reads_per_tick"] = median(per_tick)
                ent["memory_reads_per_sample"] = median(
                    [r["memory_reads"] / r["samples"] for r in rs
                     if r.get("memory_reads") is not None and r.get("samples")])
            cpu[key] = ent
        self.summary["cpu"] = cpu
        ops = {}
        for depth in (20, 500):
            base = cpu["pyprof/d%d/nonblocking" % depth]["cpu_us_per_sample"]
            withop = cpu["pyprof/d%d/nonblocking+opcodes" % depth]["cpu_us_per_sample"]
            r = ratio(withop, base)
            ops["d%d" % depth] = None if r is None else (r - 1) * 100
        self.summary["opcodes_added_cpu_pct"] = ops

    # -- 2: delivered / requested --------------------------------------------------------

    def delivered_run(self, tool, pid, rate, dur):
        """Samples delivered per requested over the profiler's own sampling window.

        pyprof: -d DUR, and meta.samples / (rate x meta.duration_secs).
        py-spy: its -d counts samples (rate x DUR), not time: when it falls behind it
        samples back to back and runs for longer. So it gets a -d it never reaches and is
        stopped with SIGINT DUR seconds after it printed "Sampling process ..." (which it
        prints once attached); samples / (rate x DUR).
        """
        if tool == "pyprof":
            p = self.start_profiler(tool, pid, rate, dur, False)
            res = self.finish_profiler(p, dur * 5 + 60)
            window = res.get("duration_secs")
        else:
            p = self.start_profiler(tool, pid, rate, dur * 1000, False, pipe_stdout=True)
            line = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                line = read_line(p, deadline - time.monotonic())
                if line is None or "Sampling process" in line:
                    break
            if line is None:
                res = self.finish_profiler(p, 0)
                res["error"] = "py-spy did not start sampling"
                window = None
            else:
                t1 = time.monotonic()
                time.sleep(max(0.0, t1 + dur - time.monotonic()))
                try:
                    os.kill(p.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
                window = time.monotonic() - t1
                res = self.finish_profiler(p, 60)
        res["requested"] = rate * dur
        res["window_s"] = window
        res["delivered_ratio"] = (None if not res.get("samples") or not window
                                  else res["samples"] / (rate * window))
        return res

    def bench_delivered(self):
        a = self.a
        reps, dur, depth = a.reps, a.delivered_seconds, 50
        rates = (1000, 10000, 50000)
        total = reps * len(rates) * len(TOOLS)
        i = 0
        for rep in range(reps):
            for rate in rates:
                tools = TOOLS if (rep + rates.index(rate)) % 2 == 0 else TOOLS[::-1]
                for tool in tools:
                    i += 1
                    tgt = self.start_target("spin.py", [depth])
                    try:
                        time.sleep(0.3)
                        res = self.delivered_run(tool, tgt.pid, rate, dur)
                    finally:
                        CHILDREN.kill(tgt)
                    res.update(section="delivered", rep=rep, depth=depth, rate=rate,
                               duration=dur, blocking=False, opcodes=False)
                    self.runs.append(res)
                    log("[delivered %d/%d] %-6s %6d Hz: %s of %d requested (%s%%)%s" % (
                        i, total, tool, rate, res["samples"], rate * dur,
                        fmt(None if res["delivered_ratio"] is None
                            else res["delivered_ratio"] * 100),
                        "" if res["exit"] == 0 else " EXIT %s %s" % (res["exit"],
                                                                    res.get("log_tail"))))
        out = {}
        for tool in TOOLS:
            for rate in rates:
                rs = [r for r in self.runs if r["section"] == "delivered"
                      and r["tool"] == tool and r["rate"] == rate]
                out["%s/%d" % (tool, rate)] = {
                    "delivered_ratio": median([r["delivered_ratio"] for r in rs]),
                    "cpu_s": median([r["cpu_s"] for r in rs]),
                    "late": median([r.get("late") for r in rs]),
                    "n": len(rs),
                }
        self.summary["delivered"] = out

    def bench_threads(self):
        """1000 threads at 100 Hz (non-blocking): delivered ÷ requested, CPU per tick."""
        a = self.a
        dur, rate = a.delivered_seconds, 100
        shutil_target = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                     "scripts", "many_threads.py")
        out = {}
        for tool in TOOLS:
            rs = []
            for rep in range(a.reps):
                tgt = self.start_target(os.path.abspath(shutil_target), [1000])
                try:
                    time.sleep(0.5)
                    res = self.delivered_run(tool, tgt.pid, rate, dur)
                finally:
                    CHILDREN.kill(tgt)
                res.update(section="threads", rep=rep, rate=rate, duration=dur, threads=1000)
                self.runs.append(res)
                rs.append(res)
                log("[threads] %-6s 1000 threads %d Hz: %s%% delivered" % (
                    tool, rate, fmt(None if res["delivered_ratio"] is None
                                    else res["delivered_ratio"] * 100)))
            out[tool] = {"delivered_ratio": median([r["delivered_ratio"] for r in rs]),
                         "cpu_s": median([r["cpu_s"] for r in rs])}
        self.summary["threads"] = out

    # -- 3: target slowdown ----------------------------------------------------------------

    def calibrate_work(self, seconds):
        """Iterations of work.py that take about `seconds` alone."""
        n = 200000
        for _ in range(6):
            t = self.work_once(n, None, attach_wait=0)["elapsed_s"]
            if t >= 0.4:
                break
            n *= 4
        n = max(1, int(n * seconds / t))
        # once more at full size: short runs extrapolate poorly
        t = self.work_once(n, None, attach_wait=0)["elapsed_s"]
        return max(1, int(n * seconds / t))

    def work_once(self, iterations, prof_cfg, attach_wait=None):
        """Run work.py once (optionally under a profiler); return its elapsed time."""
        tgt = self.start_target("work.py", [iterations, 20], stdin=True)
        p = None
        res = {}
        try:
            if prof_cfg is not None:
                tool, rate, blocking = prof_cfg
                # a duration well past the work: the profiler stops when the target exits
                p = self.start_profiler(tool, tgt.pid, rate, self.a.work_seconds * 6 + 30,
                                        blocking)
            time.sleep(self.a.attach_wait if attach_wait is None else attach_wait)
            if p is not None and CHILDREN.reap(p, 0) is not None:
                raise RuntimeError("%s exited before the work started: %s" % (
                    prof_cfg[0], tail(p._bench["log"], 5)))
            tgt.stdin.write(b"go\n")
            tgt.stdin.flush()
            line = read_line(tgt, self.a.work_seconds * 20 + 60)
            if line is None or not line.startswith("elapsed "):
                raise RuntimeError("work.py gave %r" % line)
            res["elapsed_s"] = float(line.split()[1])
            tru = CHILDREN.reap(tgt, 30)
            res["target_cpu_s"] = cpu_of(tru)
            if p is not None:
                res.update(self.finish_profiler(p, 30))
        finally:
            if p is not None and p.pid in CHILDREN.live:
                CHILDREN.stop(p, signal.SIGINT, 10)
            CHILDREN.kill(tgt)
        return res

    def bench_slowdown(self):
        a = self.a
        log("[slowdown] calibrating work.py for ~%.1f s alone ..." % a.work_seconds)
        iters = self.calibrate_work(a.work_seconds)
        log("[slowdown] %d iterations" % iters)
        configs = [None, None]  # "alone" twice per round: a steadier baseline
        for tool in TOOLS:
            for rate in (100, 1000):
                for blocking in (False, True):
                    configs.append((tool, rate, blocking))
        rng = random.Random(12345)
        total = a.slowdown_reps * len(configs)
        i = 0
        for rnd in range(a.slowdown_reps):
            order = list(configs)
            rng.shuffle(order)   # interleaved, a fresh order each round
            for cfg in order:
                i += 1
                try:
                    res = self.work_once(iters, cfg)
                except RuntimeError as e:   # one failed run is recorded, not fatal
                    log("[slowdown] run failed: %s" % e)
                    res = {"elapsed_s": None, "error": str(e)}
                res.update(section="slowdown", round=rnd, iterations=iters,
                           config="alone" if cfg is None else
                           "%s/%d/%s" % (cfg[0], cfg[1], "blocking" if cfg[2] else "nonblocking"))
                if cfg is not None:
                    res.update(rate=cfg[1], blocking=cfg[2])
                else:
                    res["tool"] = None
                self.runs.append(res)
                log("[slowdown %d/%d] %-28s %s s%s" % (
                    i, total, res["config"], fmt(res["elapsed_s"], ".3f"),
                    "" if cfg is None else " (%s samples)" % res.get("samples")))
        alone = [r["elapsed_s"] for r in self.runs if r["section"] == "slowdown"
                 and r["config"] == "alone" and r["elapsed_s"] is not None]
        base = median(alone)
        alone_cpu = [r.get("target_cpu_s") for r in self.runs
                     if r["section"] == "slowdown" and r["config"] == "alone"]
        base_cpu = median(alone_cpu)
        out = {"alone_median_s": base, "alone_n": len(alone),
               "alone_target_cpu_s": base_cpu,
               "alone_spread_pct": (max(alone) - min(alone)) / base * 100 if alone else None,
               "iterations": iters, "configs": {}}
        for cfg in configs[2:]:
            name = "%s/%d/%s" % (cfg[0], cfg[1], "blocking" if cfg[2] else "nonblocking")
            rs = [r for r in self.runs if r["section"] == "slowdown" and r["config"] == name]
            m = median([r["elapsed_s"] for r in rs])
            mc = median([r.get("target_cpu_s") for r in rs])
            out["configs"][name] = {
                "median_s": m,
                "slowdown_pct": None if m is None or not base else (m / base - 1) * 100,
                "target_cpu_s": mc,
                "target_cpu_pct": None if mc is None or not base_cpu
                else (mc / base_cpu - 1) * 100,
                "profiler_cpu_s": median([r.get("cpu_s") for r in rs]),
                "n": len(rs),
                "samples": median([r.get("samples") for r in rs]),
            }
        self.summary["slowdown"] = out

    # -- 4: peak RSS after a long run ------------------------------------------------------

    def bench_long(self):
        secs = self.a.long_seconds
        log("[rss] both profilers at 1 kHz, non-blocking, on varied.py for %d s ..." % secs)
        tgt = self.start_target("varied.py", [])
        procs = {}
        trace = {t: [] for t in TOOLS}
        try:
            time.sleep(0.3)
            for tool in TOOLS:
                procs[tool] = self.start_profiler(tool, tgt.pid, 1000, secs, False)
            t0 = time.monotonic()
            step = max(1.0, secs / 120.0)
            results = {}
            next_report = t0 + 60
            while len(results) < len(procs):
                for tool, p in procs.items():
                    if tool in results:
                        continue
                    rss = None
                    try:
                        with open("/proc/%d/status" % p.pid) as f:
                            for line in f:
                                if line.startswith("VmRSS:"):
                                    rss = int(line.split()[1])
                    except OSError:
                        pass
                    if rss is not None:
                        trace[tool].append((round(time.monotonic() - t0, 1), rss))
                    if CHILDREN.reap(p, 0) is not None or p.returncode is not None:
                        results[tool] = self.finish_profiler(p, 1)
                    elif time.monotonic() - t0 > secs + 120:
                        results[tool] = self.finish_profiler(p, 0)
                if time.monotonic() >= next_report:
                    log("[rss] %.0f s: %s" % (time.monotonic() - t0, ", ".join(
                        "%s %s kB" % (t, trace[t][-1][1]) for t in TOOLS if trace[t])))
                    next_report += 60
                if len(results) < len(procs):
                    time.sleep(step)
        finally:
            for p in procs.values():
                if p.pid in CHILDREN.live:
                    CHILDREN.stop(p, signal.SIGINT, 10)
            CHILDREN.kill(tgt)
        out = {"seconds": secs}
        for tool in TOOLS:
            res = results[tool]
            res.update(section="rss", rate=1000, duration=secs, blocking=False, opcodes=False,
                       rss_trace_kb=trace[tool])
            self.runs.append(res)
            out[tool] = {"maxrss_kb": res["maxrss_kb"], "samples": res["samples"],
                         "distinct_stacks": res.get("distinct_stacks"),
                         "cpu_s": res["cpu_s"]}
            log("[rss] %-6s peak %s kB, %s samples, %s distinct stacks" % (
                tool, res["maxrss_kb"], res["samples"], res.get("distinct_stacks")))
        self.summary["rss"] = out

    # -- 5: rendering a 1M-sample profile -------------------------------------------------

    def bench_render(self):
        a = self.a
        secs, rate = a.render_record_seconds, a.render_record_rate
        log("[render] recording varied.py with --opcodes, %d Hz for %s s ..." % (rate, secs))
        tgt = self.start_target("varied.py", [])
        try:
            time.sleep(0.3)
            p = self.start_profiler("pyprof", tgt.pid, rate, secs, False, opcodes=True)
            rec = self.finish_profiler(p, secs + 60, keep_output=True)
        finally:
            CHILDREN.kill(tgt)
        if rec["exit"] != 0 or not rec.get("samples"):
            raise RuntimeError("recording for the render test failed: %s" % rec.get("log_tail"))
        with open(rec["output"]) as f:
            d = json.load(f)
        total = sum(s["count"] for s in d["stacks"])
        k = max(1, math.ceil(1000000 / total))
        for s in d["stacks"]:
            s["count"] *= k
        for ins in d.get("instructions", []):
            ins["samples"] *= k
        m = d["meta"]
        for key in ("samples", "ticks", "memory_reads", "late"):
            if isinstance(m.get(key), int):
                m[key] *= k
        if isinstance(m.get("duration_secs"), (int, float)):
            m["duration_secs"] *= k
        m["errors"] = {r: c * k for r, c in (m.get("errors") or {}).items()}
        big = os.path.join(self.work_dir, "big.json")
        with open(big, "w") as f:
            json.dump(d, f)
        scaled = sum(s["count"] for s in d["stacks"])
        os.unlink(rec["output"])
        info = {"recorded_samples": total, "scale": k, "samples": scaled,
                "distinct_stacks": len(d["stacks"]), "frames": len(d["frames"]),
                "instructions": len(d.get("instructions", [])),
                "json_bytes": os.path.getsize(big)}
        log("[render] %d samples x %d = %d, %d distinct stacks, %d frames" % (
            total, k, scaled, info["distinct_stacks"], info["frames"]))
        for kind, ext in (("flamegraph", "svg"), ("opcodes", "txt")):
            walls, cpus = [], []
            for rep in range(a.reps):
                out = os.path.join(self.work_dir, "big.%s" % ext)
                if os.path.exists(out):
                    os.unlink(out)
                argv = [self.pyprof, "report", big, "-f", kind, "-o", out]
                t0 = time.monotonic()
                p = CHILDREN.spawn(argv, "report", stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                ru = CHILDREN.reap(p, 300)
                wall = time.monotonic() - t0
                if ru is None:
                    CHILDREN.kill(p)
                ok = p.returncode == 0 and os.path.exists(out) and os.path.getsize(out) > 0
                res = {"section": "render", "tool": "pyprof", "kind": kind, "rep": rep,
                       "argv": argv, "exit": p.returncode, "ok": ok, "wall_s": wall,
                       "cpu_s": cpu_of(ru), "maxrss_kb": None if ru is None else ru.ru_maxrss,
                       "output_bytes": os.path.getsize(out) if os.path.exists(out) else None}
                self.runs.append(res)
                log("[render] %-10s %.3f s wall, %s s CPU, %s kB, ok=%s" % (
                    kind, wall, fmt(res["cpu_s"], ".3f"), res["maxrss_kb"], ok))
                if ok:
                    walls.append(wall)
                    cpus.append(res["cpu_s"])
            info[kind] = {"wall_s": median(walls), "cpu_s": median(cpus), "n": len(walls),
                          "failed": a.reps - len(walls)}
        self.summary["render"] = info

    # -- report ---------------------------------------------------------------------------

    def machine(self):
        model = None
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        model = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        mem_kb = None
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemTotal:"):
                        mem_kb = int(line.split()[1])
        except OSError:
            pass
        pyv = run_cmd([self.py, "-c", "import sys; print(sys.version.split()[0])"]).stdout.strip()
        spy = run_cmd([self.pyspy, "--version"]).stdout.strip()
        ppv = run_cmd([self.pyprof, "--version"]).stdout.strip()
        rev = run_cmd(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip()
        dirty = run_cmd(["git", "-C", ROOT, "status", "--porcelain", "--", "src",
                         "Cargo.toml", "Cargo.lock"]).stdout.strip()
        return {
            "cpu_model": model,
            "cores": os.cpu_count(),
            "mem_gib": None if mem_kb is None else round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(),
            "os": platform.platform(),
            "python_target": "%s (%s)" % (pyv, self.py),
            "py_spy": spy,
            "pyprof": "%s (git %s%s)" % (ppv, rev or "?", ", src modified" if dirty else ""),
            "loadavg_at_start": os.getloadavg(),
        }

    def markdown(self, meta):
        s = self.summary
        a = self.a
        L = []
        L.append("## pyprof vs py-spy")
        L.append("")
        L.append("- command: `%s`" % meta["command"])
        L.append("- mode: %s; took %s (started %s)" % (
            meta["mode"], meta["elapsed_human"], meta["started_at"]))
        m = meta["machine"]
        L.append("- machine: %s, %s cores, %s GiB, Linux %s; load average (1/5/15 min) at "
                 "start %s, at end %s" % (
                     m["cpu_model"], m["cores"], m["mem_gib"], m["kernel"],
                     " ".join("%.2f" % x for x in m["loadavg_at_start"]),
                     " ".join("%.2f" % x for x in meta.get("loadavg_at_end", ()))))
        L.append("- other load: CPU busy %s before the first run, %s after the last "
                 "(share of all cores over 2 s, nothing of the bench running)" % (
                     fmt_pct(meta.get("busy_before_pct"), ".0f"),
                     fmt_pct(meta.get("busy_after_pct"), ".0f")))
        if max(meta.get("busy_before_pct") or 0, meta.get("busy_after_pct") or 0) > 10:
            L.append("- **note: other processes were using the CPU: slowdown, delivery and "
                     "CPU figures are then unreliable; rerun on a quiet machine**")
        L.append("- target interpreter: Python %s; %s; %s" % (
            m["python_target"], m["pyprof"], m["py_spy"]))
        L.append("- repetitions: %d per profiler run (alternating pyprof / py-spy), %d "
                 "interleaved rounds for slowdown; medians throughout" % (
                     a.reps, a.slowdown_reps))
        L.append("")
        L.append("| measurement | pyprof | py-spy | pyprof ÷ py-spy | pyprof target | result |")
        L.append("|---|---:|---:|---:|---|---|")

        def row(name, pp, ps, rat, goal, res):
            L.append("| %s | %s | %s | %s | %s | %s |" % (name, pp, ps, rat, goal, res))

        if "cpu" in s:
            c = s["cpu"]
            dur = a.cpu_seconds
            for depth in (20, 500):
                for mode in ("nonblocking", "blocking"):
                    pp = c["pyprof/d%d/%s" % (depth, mode)]["cpu_us_per_sample"]
                    ps = c["py-spy/d%d/%s" % (depth, mode)]["cpu_us_per_sample"]
                    r = ratio(pp, ps)
                    if depth == 500:
                        goal = "≤ 1/10 of py-spy"
                        res = pass_fail(None if r is None else r <= GOAL_CPU_RATIO)
                    else:
                        goal, res = "", ""
                    row("CPU µs per sample, depth %d, %s (1 kHz, %g s)" % (depth, mode, dur),
                        fmt(pp), fmt(ps),
                        "n/a" if r is None else "%.3f (1/%.1f)" % (r, 1 / r) if r else "0",
                        goal, res)
        if "delivered" in s:
            dv = s["delivered"]
            for rate in (1000, 10000, 50000):
                pp = dv["pyprof/%d" % rate]["delivered_ratio"]
                ps = dv["py-spy/%d" % rate]["delivered_ratio"]
                goal = "≥ 95%" if rate == 10000 else ""
                res = pass_fail(None if pp is None else pp >= GOAL_DELIVERED_10K) \
                    if rate == 10000 else ""
                row("delivered ÷ requested, %g kHz, depth 50, nonblocking" % (rate / 1000),
                    fmt_pct(None if pp is None else pp * 100, ".1f"),
                    fmt_pct(None if ps is None else ps * 100, ".1f"),
                    fmt(ratio(pp, ps), ".2f"), goal, res)
        if "threads" in s:
            th = s["threads"]
            pp = th["pyprof"]["delivered_ratio"]
            ps = th["py-spy"]["delivered_ratio"]
            row("1000 threads at 100 Hz, nonblocking: delivered ÷ requested",
                fmt_pct(None if pp is None else pp * 100, ".1f"),
                fmt_pct(None if ps is None else ps * 100, ".1f"),
                fmt(ratio(pp, ps), ".2f"), "keeps up", pass_fail(None if pp is None else pp >= 0.95))
        if "slowdown" in s:
            sd = s["slowdown"]
            for rate in (100, 1000):
                for mode in ("nonblocking", "blocking"):
                    pp = sd["configs"]["pyprof/%d/%s" % (rate, mode)]["slowdown_pct"]
                    ps = sd["configs"]["py-spy/%d/%s" % (rate, mode)]["slowdown_pct"]
                    goal, res = "", ""
                    if rate == 100:
                        g = GOAL_SLOW_NB_100 if mode == "nonblocking" else GOAL_SLOW_BLK_100
                        goal = "≤ %g%%" % g
                        res = pass_fail(None if pp is None else pp <= g)
                    row("target slowdown, %d Hz, %s" % (rate, mode), fmt_pct(pp),
                        fmt_pct(ps), "", goal, res)
        if "rss" in s:
            rs = s["rss"]
            pp = rs["pyprof"]["maxrss_kb"]
            ps = rs["py-spy"]["maxrss_kb"]
            ppm = None if pp is None else pp * 1024 / 1e6
            psm = None if ps is None else ps * 1024 / 1e6
            short = rs["seconds"] < GOAL_RSS_SECONDS
            res = pass_fail(None if ppm is None else ppm <= GOAL_RSS_MB)
            if short:
                res += " (run of %d s, not 600 s)" % rs["seconds"]
            row("peak RSS, MB, after %s at 1 kHz" % (
                "%d min" % (rs["seconds"] // 60) if rs["seconds"] % 60 == 0 and
                rs["seconds"] >= 60 else "%d s" % rs["seconds"]),
                fmt(ppm), fmt(psm), fmt(ratio(ppm, psm), ".2f"),
                "≤ %g MB after 10 min" % GOAL_RSS_MB, res)
        if "render" in s:
            rd = s["render"]
            for kind, label in (("flamegraph", "render SVG flamegraph"),
                                ("opcodes", "render opcode report")):
                w = rd[kind]["wall_s"]
                row("%s, %s samples (s)" % (label, format(rd["samples"], ",")),
                    fmt(w, ".3f"), "—", "", "< %g s" % GOAL_RENDER_S,
                    pass_fail(None if w is None else w < GOAL_RENDER_S))
        if "cpu" in s:
            c = s["cpu"]
            for depth in (20, 500):
                for suffix, label in (("", ""), ("+opcodes", ", --opcodes")):
                    v = c["pyprof/d%d/nonblocking%s" % (depth, suffix)]["memory_reads_per_tick"]
                    row("memory reads (process_vm_readv) per tick, depth %d%s" % (depth, label), fmt(v), "—",
                        "", "", "")
            for depth in (20, 500):
                v = s["opcodes_added_cpu_pct"]["d%d" % depth]
                row("CPU per sample added by --opcodes, depth %d" % depth, fmt_pct(v, "+.1f"),
                    "—", "", "≤ %g%%" % GOAL_OPCODES_PCT,
                    pass_fail(None if v is None else v <= GOAL_OPCODES_PCT))
        for sec, err in sorted(self.errors.items()):
            L.append("| %s | failed: %s | | | | **FAIL** |" % (sec, err.replace("|", "/")))
        L.append("")
        L.append("How: CPU = user+sys of the profiler process (wait4) ÷ samples it wrote "
                 "(pyprof `meta.samples`; py-spy: sum of the raw output's counts), target "
                 "`spin.py DEPTH` spinning at the bottom of a DEPTH-frame stack. Delivered = "
                 "samples ÷ (rate × sampling window): pyprof's `meta.duration_secs`; py-spy's "
                 "`-d` counts samples, not time (it samples back to back when late and runs "
                 "longer), so it is stopped with SIGINT that many seconds after it reports "
                 "sampling. Slowdown = median wall time of a fixed "
                 "workload (`work.py`, ~%.1f s alone, depth 20, timed by the target itself) "
                 "under the profiler ÷ median alone − 1." % a.work_seconds)
        if "threads" in s:
            th = s["threads"]
            pp = th["pyprof"]["delivered_ratio"]
            ps = th["py-spy"]["delivered_ratio"]
            row("1000 threads at 100 Hz, nonblocking: delivered ÷ requested",
                fmt_pct(None if pp is None else pp * 100, ".1f"),
                fmt_pct(None if ps is None else ps * 100, ".1f"),
                fmt(ratio(pp, ps), ".2f"), "keeps up", pass_fail(None if pp is None else pp >= 0.95))
        if "slowdown" in s:
            sd = s["slowdown"]
            L.append("Slowdown noise: %d runs alone, median %s s, spread (max−min) %s%% "
                     "of the median." % (sd["alone_n"], fmt(sd["alone_median_s"], ".3f"),
                                         fmt(sd["alone_spread_pct"], ".2f")))
        if "rss" in s:
            rs = s["rss"]
            L.append("Peak RSS: both profilers attached at once (non-blocking) to `varied.py` "
                     "(1,024 random root-to-leaf call paths); at the end pyprof held %s distinct "
                     "stacks, py-spy %s." % (rs["pyprof"]["distinct_stacks"],
                                             rs["py-spy"]["distinct_stacks"]))
        if "render" in s:
            rd = s["render"]
            L.append("Render: a real `--opcodes` recording of `varied.py` (%s samples, %s "
                     "distinct stacks, %s frames) with every count ×%d; wall time of "
                     "`pyprof report big.json -f flamegraph|opcodes -o …` (CPU %s s / %s s)."
                     % (format(rd["recorded_samples"], ","), format(rd["distinct_stacks"], ","),
                        format(rd["frames"], ","), rd["scale"],
                        fmt(rd["flamegraph"]["cpu_s"], ".3f"), fmt(rd["opcodes"]["cpu_s"], ".3f")))
        if "cpu" in s:
            L.append("")
            L.append("CPU per sample, every configuration (median of %d; 1 kHz requested):" %
                     a.reps)
            L.append("")
            L.append("| profiler | depth | mode | µs CPU per sample | samples | peak RSS MB "
                     "| reads per tick |")
            L.append("|---|---:|---|---:|---:|---:|---:|")
            for key, e in s["cpu"].items():
                tool, d, mode = key.split("/")
                L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                    tool, d[1:], mode, fmt(e["cpu_us_per_sample"]), fmt(e["samples"], ".0f"),
                    fmt(None if e["maxrss_kb"] is None else e["maxrss_kb"] * 1024 / 1e6),
                    fmt(e.get("memory_reads_per_tick"), ".1f", "—")))
        if "threads" in s:
            th = s["threads"]
            pp = th["pyprof"]["delivered_ratio"]
            ps = th["py-spy"]["delivered_ratio"]
            row("1000 threads at 100 Hz, nonblocking: delivered ÷ requested",
                fmt_pct(None if pp is None else pp * 100, ".1f"),
                fmt_pct(None if ps is None else ps * 100, ".1f"),
                fmt(ratio(pp, ps), ".2f"), "keeps up", pass_fail(None if pp is None else pp >= 0.95))
        if "slowdown" in s:
            sd = s["slowdown"]
            L.append("")
            L.append("Target slowdown, every configuration (%d interleaved rounds; `work.py` "
                     "%s iterations; alone: %.3f s wall, %s s CPU). Target CPU = user+sys of "
                     "the target process (includes ~interpreter start-up), insensitive to "
                     "other load on the machine but blind to pauses:" % (
                         a.slowdown_reps, format(sd["iterations"], ","),
                         sd["alone_median_s"] or float("nan"),
                         fmt(sd["alone_target_cpu_s"], ".3f")))
            L.append("")
            L.append("| profiler | rate | mode | wall s | wall slowdown | target CPU s | "
                     "CPU slowdown | samples | profiler CPU s |")
            L.append("|---|---:|---|---:|---:|---:|---:|---:|---:|")
            for key, e in sd["configs"].items():
                tool, rate, mode = key.split("/")
                L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    tool, rate, mode, fmt(e["median_s"], ".3f"), fmt_pct(e["slowdown_pct"]),
                    fmt(e["target_cpu_s"], ".3f"), fmt_pct(e["target_cpu_pct"]),
                    fmt(e["samples"], ".0f"), fmt(e["profiler_cpu_s"], ".3f")))
        return "\n".join(L) + "\n"


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="1-2 repetitions, short runs: a smoke test of 2-3 minutes")
    ap.add_argument("--skip-long", action="store_true", help="skip the long peak-RSS run")
    ap.add_argument("--long-seconds", type=int, default=None,
                    help="length of the peak-RSS run (default 600, quick 20)")
    ap.add_argument("--reps", type=int, default=None,
                    help="repetitions of each profiler run (default 3, quick 1)")
    ap.add_argument("--slowdown-reps", type=int, default=None,
                    help="interleaved rounds for the slowdown test (default 7, quick 2)")
    ap.add_argument("--only", default=None,
                    help="comma-separated subset of: cpu,delivered,threads,slowdown,rss,render")
    ap.add_argument("--python", default=DEFAULT_PYTHON, help="target interpreter")
    ap.add_argument("--pyprof", default=os.path.join(ROOT, "target", "release", "pyprof"))
    ap.add_argument("--py-spy", dest="py_spy",
                    default=os.path.join(ROOT, "target", "bench-venv", "bin", "py-spy"))
    ap.add_argument("--no-build", action="store_true",
                    help="use the existing pyprof binary (default: cargo build --release)")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "target", "bench"))
    a = ap.parse_args()
    q = a.quick
    a.reps = a.reps or (1 if q else 3)
    a.slowdown_reps = a.slowdown_reps or (2 if q else 7)
    a.long_seconds = a.long_seconds or (20 if q else GOAL_RSS_SECONDS)
    a.cpu_seconds = 2 if q else 5
    a.delivered_seconds = 2 if q else 5
    a.work_seconds = 1.5 if q else 4.0
    a.attach_wait = 1.0
    a.render_record_seconds = 3 if q else 10
    a.render_record_rate = 1000 if q else 2000
    sections = ["cpu", "delivered", "threads", "slowdown", "rss", "render"]
    if a.only:
        want = [x.strip() for x in a.only.split(",") if x.strip()]
        bad = [x for x in want if x not in sections]
        if bad:
            ap.error("unknown section(s) for --only: %s" % ", ".join(bad))
        sections = [x for x in sections if x in want]
    if a.skip_long and "rss" in sections:
        sections.remove("rss")
    a.sections = sections
    return a


def ensure_tools(a):
    if not a.no_build:
        log("[setup] cargo build --release")
        r = subprocess.run(["cargo", "build", "--release"], cwd=ROOT)
        if r.returncode != 0:
            sys.exit("bench: cargo build --release failed (use --no-build to bench the "
                     "existing binary)")
    if not os.access(a.pyprof, os.X_OK):
        sys.exit("bench: no pyprof binary at %s" % a.pyprof)
    if not os.access(a.python, os.X_OK):
        sys.exit("bench: no target interpreter at %s (use --python)" % a.python)
    if not os.access(a.py_spy, os.X_OK):
        venv = os.path.dirname(os.path.dirname(a.py_spy))
        log("[setup] installing py-spy into %s" % venv)
        if not os.path.exists(os.path.join(venv, "bin", "pip")):
            subprocess.run([a.python, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "py-spy"],
                       check=True)
        if not os.access(a.py_spy, os.X_OK):
            sys.exit("bench: py-spy not found at %s after installing" % a.py_spy)


def human(secs):
    m, s = divmod(int(round(secs)), 60)
    return "%d min %02d s" % (m, s) if m else "%d s" % s


def main():
    a = parse_args()
    # Ctrl-C raises KeyboardInterrupt even when started with SIGINT ignored (as a
    # background job); SIGTERM and SIGHUP do the same
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    command = shlex.join(getattr(sys, "orig_argv", [sys.executable] + sys.argv)) \
        if hasattr(shlex, "join") else " ".join(sys.argv)
    t_start = time.monotonic()
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    ensure_tools(a)
    b = Bench(a)
    meta = {"command": command, "cwd": os.getcwd(), "started_at": started,
            "mode": "quick" if a.quick else "full", "sections": a.sections,
            "machine": b.machine(),
            "settings": {k: getattr(a, k) for k in (
                "reps", "slowdown_reps", "long_seconds", "cpu_seconds", "delivered_seconds",
                "work_seconds", "attach_wait", "render_record_seconds", "render_record_rate",
                "python", "pyprof", "py_spy")}}
    log("[setup] %s" % json.dumps(meta["machine"]))
    log("[setup] sections: %s" % ", ".join(a.sections))
    meta["busy_before_pct"] = cpu_busy()
    log("[setup] CPU busy before start: %s%%" % fmt(meta["busy_before_pct"], ".0f"))
    interrupted = None
    try:
        for sec in a.sections:
            t0 = time.monotonic()
            try:
                getattr(b, "bench_" + {"rss": "long"}.get(sec, sec))()
            except Exception:
                # one broken section (a profiler that crashed, a target that did not
                # start) does not lose the others
                tb = traceback.format_exc()
                log(tb)
                b.errors[sec] = tb.strip().splitlines()[-1]
                CHILDREN.cleanup()
            log("[%s] done in %s" % (sec, human(time.monotonic() - t0)))
    except KeyboardInterrupt as e:
        interrupted = "interrupted (%s)" % (str(e) or "Ctrl-C")
        log("bench: %s; stopping every child process" % interrupted)
    finally:
        CHILDREN.cleanup()
    elapsed = time.monotonic() - t_start
    meta["elapsed_s"] = elapsed
    meta["loadavg_at_end"] = os.getloadavg()
    meta["busy_after_pct"] = None if interrupted else cpu_busy()
    meta["elapsed_human"] = human(elapsed) + (" — " + interrupted if interrupted else "")
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "results.json"), "w") as f:
        json.dump({"meta": meta, "summary": b.summary, "errors": b.errors, "runs": b.runs},
                  f, indent=1)
    md = b.markdown(meta)
    with open(os.path.join(a.out_dir, "results.md"), "w") as f:
        f.write(md)
    if not any("log_tail" in r for r in b.runs):   # keep the logs of failed runs
        shutil.rmtree(b.work_dir, ignore_errors=True)
    print(md)
    log("bench: wrote %s and %s (%s)" % (os.path.join(a.out_dir, "results.json"),
                                         os.path.join(a.out_dir, "results.md"), human(elapsed)))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
