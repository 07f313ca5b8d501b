//! `pyprof dump`: one consistent snapshot of every thread's stack, with the thread's
//! OS id, scheduler state and whether it holds the GIL.

use crate::code::resolve::resolve_frame;
use crate::code::{read_c_string, read_str};
use crate::process::threads::ThreadStates;
use crate::process::Memory;
use crate::profile::Frame;
use crate::runtime::layout::Layout;
use crate::runtime::objects::Objects;
use crate::sampler::Session;
use crate::walker::{RawThread, WalkError};
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
    /// Holds the GIL at the moment of the dump.
    pub gil: bool,
    /// Frames, innermost first.
    pub frames: Vec<Frame>,
    /// With `--locals`: per frame (same order), its local variables as (name, value).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locals: Vec<Vec<(String, String)>>,
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
}

/// The whole dump.
#[derive(Clone, Debug, Serialize)]
pub struct Dump {
    pub pid: i32,
    pub python_version: String,
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
    dump_with(session, blocking, locals, false)
}

/// [`dump`], and with `async_aware` each thread running an asyncio task shown as that
/// task's stack under `<task NAME>` frames of its await chain (3.8+; refused before).
pub fn dump_with(
    session: &mut Session,
    blocking: bool,
    locals: bool,
    async_aware: bool,
) -> Result<Dump> {
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
    let _lock = if blocking {
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
            gil: gil == Some(tstate),
            frames: Vec::new(),
            locals: Vec::new(),
            error: None,
            tasks: None,
            tasks_error: None,
        };
        match t {
            Ok(mut raw) => {
                if let Some(r) = reader.as_mut() {
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
                let frames: Result<Vec<Frame>, WalkError> = raw
                    .frames
                    .iter()
                    .filter_map(|rf| {
                        let info = match session.sampler.code.code(mem, rf.code) {
                            Ok(i) => i,
                            Err(e) => return Some(Err(e)),
                        };
                        resolve_frame(&layout, &info, rf, None, mem).transpose()
                    })
                    .collect();
                match frames {
                    Ok(f) => d.frames = f,
                    Err(e) => d.error = Some(e.to_string()),
                }
                for name in d.tasks.iter().flatten().rev() {
                    d.frames.push(Frame::task(name));
                }
                if locals {
                    d.locals = raw
                        .frames
                        .iter()
                        .filter(|rf| {
                            session.sampler.code.code(mem, rf.code).is_ok_and(|info| {
                                resolve_frame(&layout, &info, rf, None, mem)
                                    .ok()
                                    .flatten()
                                    .is_some()
                            })
                        })
                        .map(|rf| frame_locals(mem, &layout, rf.code, rf.frame))
                        .collect();
                }
            }
            Err(e) => d.error = Some(e.to_string()),
        }
        out.push(d);
    }
    Ok(Dump {
        pid: session.pid,
        python_version: session.runtime.version.to_string(),
        threads: out,
    })
}

/// Most locals shown per frame, and the longest value text.
const MAX_LOCALS: usize = 64;
const MAX_VALUE: usize = 80;

/// The local variables of a frame: names from the code object, values from the frame's
/// `localsplus`, shown when simple (None, bool, int, float, str, bytes), else by type.
fn frame_locals(mem: &dyn Memory, l: &Layout, code: u64, frame: u64) -> Vec<(String, String)> {
    let Ok(names) = mem.read_u64(code.wrapping_add(l.code_varnames as u64)) else {
        return Vec::new();
    };
    let Ok(n) = mem.read_u32(code.wrapping_add(l.code_nlocals as u64)) else {
        return Vec::new();
    };
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
        out.push((name, value_text(mem, l, v)));
    }
    out
}

/// A short text for a Python object, read without running code in the target.
pub fn value_text(mem: &dyn Memory, l: &Layout, obj: u64) -> String {
    let ty = mem
        .read_u64(obj.wrapping_add(l.ob_type as u64))
        .unwrap_or(0);
    let tname = mem
        .read_u64(ty.wrapping_add(l.type_name as u64))
        .ok()
        .and_then(|p| read_c_string(mem, p, 64).ok())
        .unwrap_or_else(|| "?".into());
    let header = l.ob_type as u64 + 8; // sizeof(PyObject)
    let text = match tname.as_str() {
        "NoneType" => Some("None".to_string()),
        "int" | "bool" | "long" => {
            Objects::new(mem, l)
                .read_int(obj)
                .map(|v| match (tname.as_str(), v) {
                    ("bool", 0) => "False".into(),
                    ("bool", _) => "True".into(),
                    _ => v.to_string(),
                })
        }
        "float" => mem
            .read_u64(obj + header)
            .ok()
            .map(|b| format!("{:?}", f64::from_bits(b))),
        "str" | "unicode" => read_str(mem, l, obj).ok().map(|s| format!("{s:?}")),
        "bytes" => crate::code::read_bytes(mem, l, obj)
            .ok()
            .map(|b| format!("b{:?}", String::from_utf8_lossy(&b))),
        _ => None,
    };
    let text = text.unwrap_or_else(|| format!("<{tname} object at {obj:#x}>"));
    if text.chars().count() > MAX_VALUE {
        let cut: String = text.chars().take(MAX_VALUE - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// The dump as text, like a traceback per thread (innermost last, as Python prints).
pub fn write_text(d: &Dump, w: &mut dyn std::io::Write) -> Result<()> {
    writeln!(
        w,
        "Process {} · Python {} · {} threads",
        d.pid,
        d.python_version,
        d.threads.len()
    )?;
    for t in &d.threads {
        let name = t.name.as_deref().unwrap_or("?");
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
            if t.gil { ", holds the GIL" } else { "" }
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
        for (i, f) in t.frames.iter().enumerate().rev() {
            if f.is_synthetic() {
                writeln!(w, "    {}", f.function)?;
                continue;
            }
            writeln!(w, "    {} ({}:{})", f.function, f.file, f.line)?;
            for (name, value) in t.locals.get(i).into_iter().flatten() {
                writeln!(w, "        {name} = {value}")?;
            }
        }
    }
    Ok(())
}
