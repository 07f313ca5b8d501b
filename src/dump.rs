//! `pyprof dump`: one consistent snapshot of every thread's stack, with the thread's
//! OS id, scheduler state and whether it holds the GIL.

use crate::code::resolve::resolve_frame;
use crate::code::{read_c_string, read_str};
use crate::process::threads::ThreadStates;
use crate::process::Memory;
use crate::profile::Frame;
use crate::runtime::layout::{Layout, StringKind};
use crate::runtime::objects::Objects;
use crate::sampler::Session;
use crate::walker::RawThread;
use anyhow::Result;
use serde::Serialize;

/// One thread in a dump.
#[derive(Clone, Debug, Serialize)]
pub struct ThreadDump {
    /// `threading.get_ident()`
    pub thread_id: u64,
    /// The OS thread id as the kernel numbers it where pyprof runs, when known.
    pub native_id: Option<u64>,
    /// Its id in the target's own PID namespace, where that differs (a container).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ns_id: Option<u64>,
    /// The thread's name in Python, when it can be read.
    pub name: Option<String>,
    /// "running", "idle" (waiting), "stopped", or "unknown", from the OS.
    pub state: String,
    /// Holds the GIL at the moment of the dump; `null` where there is no GIL (a
    /// free-threaded build).
    pub gil: Option<bool>,
    /// Frames, innermost first (in the text too).
    pub frames: Vec<DumpFrame>,
    /// Why the stack could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With `--async-aware`: the asyncio task the thread is running and the tasks awaiting
    /// it, outermost first (the frames are then the task's, under `<task NAME>` frames).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<String>>,
    /// With `--async-aware`: why the thread's tasks could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks_error: Option<String>,
    /// With `--async-aware`: every other pending task of the thread's event loop, and
    /// where it is suspended.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting_tasks: Vec<WaitingTask>,
}

/// A task that waits (`dump --async-aware`).
#[derive(Clone, Debug, Serialize)]
pub struct WaitingTask {
    /// Its name last, after the tasks awaiting it, outermost first.
    pub tasks: Vec<String>,
    /// Another task awaits it.
    pub awaited: bool,
    /// Where its coroutine chain is suspended, innermost first.
    pub frames: Vec<Frame>,
}

/// A frame of a dump: where it is and, with `--locals`, its arguments and locals.
#[derive(Clone, Debug, Serialize)]
pub struct DumpFrame {
    #[serde(flatten)]
    pub frame: Frame,
    /// With `--locals`: the frame's arguments (first, `arg: true`) and local variables
    /// bound at the moment of the dump, in the code object's order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locals: Vec<Local>,
}

/// A local variable (or argument) and a short text of its value.
#[derive(Clone, Debug, Serialize)]
pub struct Local {
    pub name: String,
    pub value: String,
    /// A parameter of the function (positional, keyword-only, *args or **kwargs).
    pub arg: bool,
}

/// The whole dump.
#[derive(Clone, Debug, Serialize)]
pub struct Dump {
    pub pid: i32,
    pub python_version: String,
    /// The target's working directory (for shortened file names), when known.
    #[serde(skip)]
    pub cwd: String,
    pub threads: Vec<ThreadDump>,
}

fn state_word(c: Option<char>) -> &'static str {
    match c {
        Some('R') => "running",
        Some('D') => "running (I/O)",
        Some('S') | Some('I') => "idle",
        Some('T') | Some('t') => "stopped",
        _ => "unknown",
    }
}

/// Take the snapshot (pausing the target unless `blocking` is false); with `locals`, read
/// each frame's local variables too.
pub fn dump(session: &mut Session, blocking: bool, locals: bool) -> Result<Dump> {
    dump_with(session, blocking, locals, false, false)
}

/// [`dump`], and with `async_aware` each thread running an asyncio task shown as that
/// task's stack under `<task NAME>` frames of its await chain (3.8+; refused before);
/// with `native`, each thread's native frames interleaved with its Python frames (read
/// while it is paused: `blocking` only).
pub fn dump_with(
    session: &mut Session,
    blocking: bool,
    locals: bool,
    async_aware: bool,
    native: bool,
) -> Result<Dump> {
    if native && !blocking {
        anyhow::bail!("-n/--native: dump reads each thread's registers and stack while it is paused: drop --nonblocking");
    }
    let mut unwinder = native.then(|| crate::process::native::NativeUnwinder::new(session.pid));
    let mut reader = if async_aware {
        Some(
            crate::runtime::asyncio::AsyncioReader::new(session.pid, &session.runtime.layout)
                .map_err(anyhow::Error::msg)?,
        )
    } else {
        None
    };
    let mut os = ThreadStates::new(session.pid);
    let states = os.snapshot();
    // Every thread paused (a stopped target is paused already: its group stop is seen
    // for what it is, and it stays stopped after).
    let mut lock =
        if blocking {
            Some(crate::process::ptrace::pause_all(session.pid).map_err(|e| {
                anyhow::anyhow!("cannot pause process {}: {}", session.pid, e.desc())
            })?)
        } else {
            None
        };
    let mem: &dyn Memory = &session.mem;
    let walker = &session.sampler.walker;
    let interp = walker
        .main_interpreter(mem)
        .map_err(|e| anyhow::anyhow!("reading the interpreter: {e}"))?;
    if interp == 0 {
        anyhow::bail!("Python is not initialised in process {}", session.pid);
    }
    let gil = walker.gil_holder(mem, interp);
    let has_gil = walker.has_gil();
    let names = crate::runtime::objects::thread_names(mem, &session.runtime.layout, interp);
    let mut threads_raw = Vec::new();
    let mut tstates = Vec::new();
    walker
        .walk_all(mem, interp, &mut threads_raw, &mut tstates)
        .map_err(|e| anyhow::anyhow!("reading the thread list: {e}"))?;
    let layout = session.runtime.layout.clone();
    let mut out = Vec::new();
    // ≤3.10 records no OS thread id: learn where glibc keeps it (the id in the target's
    // PID namespace), from every thread.
    let tasks: std::collections::HashSet<u64> = session.ns.ns_ids();
    let mut tids = crate::process::threads::TidResolver::default();
    let pthreads: Vec<u64> = threads_raw
        .iter()
        .filter_map(|t| t.as_ref().ok().map(|r| r.thread_id))
        .collect();
    tids.learn(mem, &pthreads, &tasks);
    for (i, t) in threads_raw.into_iter().enumerate() {
        let tstate = tstates.get(i).copied().unwrap_or(0);
        let t = t.or_else(|e| {
            let mut raw = RawThread::default();
            walker
                .walk_thread(mem, tstate, &mut raw)
                .map(|()| raw)
                .map_err(|_| e)
        });
        let mut d = ThreadDump {
            thread_id: 0,
            native_id: None,
            ns_id: None,
            name: None,
            state: "unknown".into(),
            gil: has_gil.then_some(gil == Some(tstate)),
            frames: Vec::new(),
            error: None,
            tasks: None,
            tasks_error: None,
            waiting_tasks: Vec::new(),
        };
        match t {
            Ok(mut raw) => {
                if let Some(r) = reader.as_mut() {
                    match r.thread_tasks(mem, walker, &raw) {
                        Ok(list) => {
                            for t in list.into_iter().filter(|t| !t.running) {
                                let frames = t
                                    .frames
                                    .iter()
                                    .filter_map(|rf| {
                                        let info = session.sampler.code.code(mem, rf.code).ok()?;
                                        resolve_frame(&layout, &info, rf, None, mem).ok()?
                                    })
                                    .collect();
                                d.waiting_tasks.push(WaitingTask {
                                    tasks: t.names,
                                    awaited: t.awaited,
                                    frames,
                                });
                            }
                            d.waiting_tasks.sort_by(|a, b| a.tasks.cmp(&b.tasks));
                        }
                        Err(e) => d.tasks_error = Some(format!("asyncio: {e}")),
                    }
                    let is_frame_of =
                        |f: &crate::walker::RawFrame, coro: u64| walker.is_frame_of(mem, f, coro);
                    match r.running(mem, &layout, &raw, &is_frame_of) {
                        Ok(Some((chain, at))) => {
                            raw.frames.truncate(at + 1);
                            d.tasks = Some(chain.names);
                        }
                        Ok(None) => {}
                        Err(e) => d.tasks_error = Some(format!("asyncio: {e}")),
                    }
                }
                d.thread_id = raw.thread_id;
                let ns_tid = raw
                    .native_id
                    .or_else(|| tids.tid(mem, raw.thread_id, &tasks));
                d.native_id = ns_tid.and_then(|t| session.ns.host(t));
                d.ns_id = ns_tid.filter(|&t| Some(t) != d.native_id);
                d.name = names.get(&raw.thread_id).cloned();
                d.state = state_word(d.native_id.and_then(|n| states.get(&n).copied())).into();
                let mut frames = Vec::new();
                // How many Python frames each C call of the eval loop runs (--native).
                let mut groups = Vec::new();
                let mut run = 0;
                for rf in &raw.frames {
                    let resolved = session
                        .sampler
                        .code
                        .code(mem, rf.code)
                        .and_then(|info| resolve_frame(&layout, &info, rf, None, mem));
                    match resolved {
                        Ok(Some(frame)) => {
                            let locals = if locals {
                                frame_locals(mem, &layout, rf.code, rf.frame)
                            } else {
                                Vec::new()
                            };
                            frames.push(DumpFrame { frame, locals });
                            run += 1;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            d.error = Some(e.to_string());
                            break;
                        }
                    }
                    if rf.entry || std::ptr::eq(rf, raw.frames.last().unwrap_or(rf)) {
                        groups.push(run);
                        run = 0;
                    }
                }
                if let (Some(u), Some(p), Some(tid), None) =
                    (unwinder.as_mut(), lock.as_mut(), d.native_id, &d.error)
                {
                    if d.tasks.is_none() {
                        frames = with_native(session.pid, u, p, tid, frames, &groups);
                    }
                }
                for name in d.tasks.iter().flatten().rev() {
                    frames.push(DumpFrame {
                        frame: Frame::task(name),
                        locals: Vec::new(),
                    });
                }
                d.frames = frames;
            }
            Err(e) => d.error = Some(e.to_string()),
        }
        out.push(d);
    }
    Ok(Dump {
        pid: session.pid,
        python_version: session.runtime.version.to_string(),
        cwd: std::fs::read_link(format!("/proc/{}/cwd", session.pid))
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        threads: out,
    })
}

/// `--native`: paused thread `tid`'s native frames interleaved with its Python `frames`
/// (innermost first), or the Python frames alone when its stack cannot be unwound.
fn with_native(
    pid: i32,
    unwinder: &mut crate::process::native::NativeUnwinder,
    paused: &mut crate::process::ptrace::Paused,
    tid: u64,
    frames: Vec<DumpFrame>,
    groups: &[usize],
) -> Vec<DumpFrame> {
    use crate::process::native::{NativeAt, StackCopy};
    let Some(regs) = paused.regs(tid) else {
        return frames;
    };
    let mut copy = StackCopy::read(pid, regs.sp);
    let mut stack = Vec::new();
    unwinder.unwind(regs, &mut |a| copy.word(a), &mut stack);
    let symbolized: Vec<(Vec<DumpFrame>, bool, bool)> = stack
        .iter()
        .map(|&a| {
            let s = unwinder.symbolize(a);
            let f = s
                .shown()
                .map(|f| DumpFrame {
                    frame: Frame::native_code(f),
                    locals: Vec::new(),
                })
                .collect();
            (f, s.eval, s.is_main())
        })
        .collect();
    let native: Vec<NativeAt<'_, DumpFrame>> = symbolized
        .iter()
        .map(|(f, eval, main)| NativeAt {
            frames: f,
            eval: *eval,
            main: *main,
        })
        .collect();
    match crate::process::native::interleave(&frames, groups, &native) {
        Some((merged, _)) => merged,
        None => frames,
    }
}

/// Most locals shown per frame, the longest value text, and how deep and how many items
/// of containers are shown.
const MAX_LOCALS: usize = 64;
const MAX_VALUE: usize = 120;
const MAX_DEPTH: usize = 3;
const MAX_ITEMS: usize = 8;

/// `co_flags` bits for `*args` and `**kwargs` (every version).
const CO_VARARGS: u32 = 0x4;
const CO_VARKEYWORDS: u32 = 0x8;

/// The local variables of a frame: names from the code object, values from the frame's
/// `localsplus` (the arguments come first: `co_argcount` + `co_kwonlyargcount`, then
/// `*args` and `**kwargs` where the flags say so), shown as values where simple or a
/// bounded container of them, else by type.
fn frame_locals(mem: &dyn Memory, l: &Layout, code: u64, frame: u64) -> Vec<Local> {
    let Ok(names) = mem.read_u64(code.wrapping_add(l.code_varnames as u64)) else {
        return Vec::new();
    };
    let Ok(n) = mem.read_u32(code.wrapping_add(l.code_nlocals as u64)) else {
        return Vec::new();
    };
    let argcount = mem
        .read_u32(code.wrapping_add(l.code_argcount as u64))
        .unwrap_or(0) as u64;
    let kwonly = l
        .code_kwonlyargcount
        .and_then(|o| mem.read_u32(code.wrapping_add(o as u64)).ok())
        .unwrap_or(0) as u64;
    let flags = mem
        .read_u32(code.wrapping_add(l.code_flags as u64))
        .unwrap_or(0);
    let nargs = argcount
        + kwonly
        + u64::from(flags & CO_VARARGS != 0)
        + u64::from(flags & CO_VARKEYWORDS != 0);
    let items = names.wrapping_add(l.tuple_item as u64);
    let count = mem
        .read_u64(names.wrapping_add(l.ob_size as u64))
        .unwrap_or(0)
        .min(n as u64);
    let mut out = Vec::new();
    for i in 0..count.min(MAX_LOCALS as u64) {
        let Ok(name_ptr) = mem.read_u64(items + 8 * i) else {
            break;
        };
        let Ok(name) = read_str(mem, l, name_ptr) else {
            continue;
        };
        let Ok(v) = mem.read_u64(frame.wrapping_add(l.frame_localsplus as u64 + 8 * i)) else {
            continue;
        };
        // 3.14+: stack references carry tag bits.
        let v = v & !(l.frame_code_tag_mask as u64);
        if v == 0 {
            continue; // not bound yet
        }
        out.push(Local {
            name,
            value: value_text(mem, l, v),
            arg: i < nargs,
        });
    }
    out
}

/// A short text for a Python object, read without running code in the target: None,
/// bool, int, float, str, bytes as Python shows them; list, tuple and dict as their
/// items (at most 8 each, 3 levels deep, 120 characters in all); anything else by type.
pub fn value_text(mem: &dyn Memory, l: &Layout, obj: u64) -> String {
    let objects = Objects::new(mem, l);
    let text = repr(mem, l, &objects, obj, 0);
    if text.chars().count() > MAX_VALUE {
        let cut: String = text.chars().take(MAX_VALUE - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

fn type_name(mem: &dyn Memory, l: &Layout, obj: u64) -> String {
    let ty = mem
        .read_u64(obj.wrapping_add(l.ob_type as u64))
        .unwrap_or(0);
    mem.read_u64(ty.wrapping_add(l.type_name as u64))
        .ok()
        .and_then(|p| read_c_string(mem, p, 64).ok())
        .unwrap_or_else(|| "?".into())
}

fn repr(mem: &dyn Memory, l: &Layout, objects: &Objects, obj: u64, depth: usize) -> String {
    let tname = type_name(mem, l, obj);
    let header = l.ob_type as u64 + 8; // sizeof(PyObject)
    let text = match tname.as_str() {
        "NoneType" => Some("None".to_string()),
        "int" | "bool" | "long" => objects.read_int(obj).map(|v| match (tname.as_str(), v) {
            ("bool", 0) => "False".into(),
            ("bool", _) => "True".into(),
            _ => v.to_string(),
        }),
        "float" => mem
            .read_u64(obj + header)
            .ok()
            .map(|b| format!("{:?}", f64::from_bits(b))),
        "unicode" if l.string_kind == StringKind::Bytes => {
            py2_unicode(mem, l, obj).map(|s| crate::code::symbols::str_repr(&s))
        }
        "str" | "unicode" => read_str(mem, l, obj)
            .ok()
            .map(|s| crate::code::symbols::str_repr(&s)),
        "bytes" => crate::code::read_bytes(mem, l, obj).ok().map(|b| {
            format!(
                "b{}",
                crate::code::symbols::str_repr(&String::from_utf8_lossy(&b))
            )
        }),
        "list" | "tuple" => sequence(mem, l, objects, obj, depth, tname == "tuple"),
        "dict" => dict(mem, l, objects, obj, depth),
        _ => None,
    };
    text.unwrap_or_else(|| format!("<{tname} object at {obj:#x}>"))
}

/// Python 2's `unicode`: the length and a pointer to `Py_UNICODE` units after the
/// object header, 2 or 4 bytes each as the interpreter was built. A UCS4 string has a
/// zero high half in every unit below U+10000; a UCS2 one has characters there (its
/// NUL terminator makes a 1-character string read the same either way).
fn py2_unicode(mem: &dyn Memory, l: &Layout, obj: u64) -> Option<String> {
    let header = l.ob_type as u64 + 8;
    let len = mem.read_u64(obj + header).ok()? as usize;
    let data = mem.read_u64(obj + header + 8).ok()?;
    let n = len.min(4096);
    let b = mem.read_vec(data, n * 4).ok()?;
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let ucs4 = units.iter().skip(1).step_by(2).all(|&u| u <= 0x10);
    Some(if ucs4 {
        b.chunks_exact(4)
            .map(|c| {
                char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('\u{fffd}')
            })
            .collect()
    } else {
        String::from_utf16_lossy(&units[..n])
    })
}

/// The items of a list (`ob_item`, a pointer after the size) or a tuple (inline).
fn sequence(
    mem: &dyn Memory,
    l: &Layout,
    objects: &Objects,
    obj: u64,
    depth: usize,
    tuple: bool,
) -> Option<String> {
    let n = mem.read_u64(obj + l.ob_size as u64).ok()? as i64;
    if !(0..=1 << 40).contains(&n) {
        return None;
    }
    let items = if tuple {
        obj + l.tuple_item as u64
    } else {
        mem.read_u64(obj + l.ob_size as u64 + 8).ok()?
    };
    let (open, close) = if tuple { ("(", ")") } else { ("[", "]") };
    if depth >= MAX_DEPTH && n > 0 {
        return Some(format!("{open}…{close}"));
    }
    let shown = (n as usize).min(MAX_ITEMS);
    let mut parts = Vec::with_capacity(shown + 1);
    if shown > 0 {
        let raw = mem.read_vec(items, shown * 8).ok()?;
        for c in raw.chunks_exact(8) {
            let p = u64::from_le_bytes(c.try_into().ok()?);
            parts.push(repr(mem, l, objects, p, depth + 1));
        }
    }
    if n as usize > shown {
        parts.push(format!("… ({n} items)"));
    }
    let comma = if tuple && n == 1 { "," } else { "" };
    Some(format!("{open}{}{comma}{close}", parts.join(", ")))
}

fn dict(mem: &dyn Memory, l: &Layout, objects: &Objects, obj: u64, depth: usize) -> Option<String> {
    let entries = objects.dict_entries(obj)?;
    if depth >= MAX_DEPTH && !entries.is_empty() {
        return Some("{…}".into());
    }
    let mut parts: Vec<String> = entries
        .iter()
        .take(MAX_ITEMS)
        .map(|e| {
            format!(
                "{}: {}",
                repr(mem, l, objects, e.key, depth + 1),
                repr(mem, l, objects, e.value, depth + 1)
            )
        })
        .collect();
    if entries.len() > MAX_ITEMS {
        parts.push(format!("… ({} items)", entries.len()));
    }
    Some(format!("{{{}}}", parts.join(", ")))
}

/// The dump as text, frames innermost first (as in the JSON, and as py-spy prints
/// them); file names shortened unless `full_filenames`.
pub fn write_text(d: &Dump, full_filenames: bool, w: &mut dyn std::io::Write) -> Result<()> {
    let n = d.threads.len();
    writeln!(
        w,
        "Process {} · Python {} · {n} thread{} · frames innermost first",
        d.pid,
        d.python_version,
        if n == 1 { "" } else { "s" }
    )?;
    // File names as profiles show them (relative to the main script's folder: the
    // `<module>` at the root of a stack).
    let script = d
        .threads
        .iter()
        .filter_map(|t| t.frames.last())
        .map(|f| &f.frame)
        .find(|f| {
            f.function == "<module>"
                && !f.file.starts_with('<')
                && !crate::output::is_library(&f.file)
        })
        .map(|f| f.file.as_str());
    let names = crate::output::FileNames::of(&d.cwd, script, full_filenames);
    for t in &d.threads {
        let name = t.name.as_deref().unwrap_or("(no name)");
        let id = match (t.native_id, t.ns_id) {
            (Some(n), Some(ns)) => format!("tid {n}, {ns} in its namespace"),
            (Some(n), None) => format!("tid {n}"),
            (None, _) => format!("{:#x}", t.thread_id),
        };
        writeln!(w)?;
        writeln!(
            w,
            "Thread {name} ({id}, ident {:#x}): {}{}",
            t.thread_id,
            t.state,
            if t.gil == Some(true) {
                ", holds the GIL"
            } else {
                ""
            }
        )?;
        if let Some(e) = &t.error {
            writeln!(w, "    (stack not readable: {e})")?;
        }
        if let Some(tasks) = &t.tasks {
            writeln!(w, "    running asyncio task {}", tasks.join(" > "))?;
        }
        if let Some(e) = &t.tasks_error {
            writeln!(w, "    (asyncio tasks not readable: {e})")?;
        }
        let frames = t.frames.iter().map(|f| (&f.frame, f.locals.as_slice()));
        write_frames(w, &names, frames, "    ")?;
        if !t.waiting_tasks.is_empty() {
            writeln!(w, "    waiting asyncio tasks ({}):", t.waiting_tasks.len())?;
        }
        for task in &t.waiting_tasks {
            writeln!(
                w,
                "      task {}{}",
                task.tasks.join(" > "),
                if task.awaited { " (awaited)" } else { "" }
            )?;
            write_frames(
                w,
                &names,
                task.frames.iter().map(|f| (f, &[][..])),
                "        ",
            )?;
        }
    }
    Ok(())
}

/// Frames, one a line, innermost first, each followed by its arguments and locals.
fn write_frames<'a>(
    w: &mut dyn std::io::Write,
    names: &crate::output::FileNames,
    frames: impl Iterator<Item = (&'a Frame, &'a [Local])>,
    indent: &str,
) -> std::io::Result<()> {
    for (f, locals) in frames {
        if f.is_synthetic() {
            writeln!(w, "{indent}{}", f.function)?;
            continue;
        }
        if let Some(place) = f.native_place(true) {
            writeln!(w, "{indent}{} ({place}) [native]", f.function)?;
            continue;
        }
        let file = names.show(&f.file);
        writeln!(w, "{indent}{} ({file}:{})", f.function, f.line)?;
        for (title, args) in [("Arguments", true), ("Locals", false)] {
            let mut some = locals.iter().filter(|v| v.arg == args).peekable();
            if some.peek().is_none() {
                continue;
            }
            writeln!(w, "{indent}    {title}:")?;
            for v in some {
                writeln!(w, "{indent}        {} = {}", v.name, v.value)?;
            }
        }
    }
    Ok(())
}
