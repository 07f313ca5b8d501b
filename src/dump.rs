//! `pyprof dump`: one consistent snapshot of every thread's stack, with the thread's
//! OS id, scheduler state and whether it holds the GIL.

use crate::process::threads::ThreadStates;
use crate::process::Memory;
use crate::profile::Frame;
use crate::sampler::{resolve_frame, Session};
use crate::walker::{RawThread, WalkError};
use anyhow::Result;
use serde::Serialize;

/// One thread in a dump.
#[derive(Clone, Debug, Serialize)]
pub struct ThreadDump {
    /// `threading.get_ident()`
    pub thread_id: u64,
    /// The OS thread id, when known.
    pub native_id: Option<u64>,
    /// The thread's name in Python, when it can be read.
    pub name: Option<String>,
    /// "running", "idle" (waiting), "stopped", or "unknown", from the OS.
    pub state: String,
    /// Holds the GIL at the moment of the dump.
    pub gil: bool,
    /// Frames, innermost first.
    pub frames: Vec<Frame>,
    /// Why the stack could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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

/// Take the snapshot (pausing the target unless `blocking` is false).
pub fn dump(session: &mut Session, blocking: bool) -> Result<Dump> {
    let mut os = ThreadStates::new(session.pid);
    let states = os.snapshot();
    let _lock = if blocking {
        Some(remoteprocess::Process::new(session.pid).and_then(|p| p.lock())?)
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
    let tasks: std::collections::HashSet<u64> = states.keys().copied().collect();
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
            name: None,
            state: "unknown".into(),
            gil: gil == Some(tstate),
            frames: Vec::new(),
            error: None,
        };
        match t {
            Ok(raw) => {
                d.thread_id = raw.thread_id;
                d.native_id = raw.native_id.or_else(|| {
                    crate::process::threads::TidResolver::default().tid(mem, raw.thread_id, &tasks)
                });
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
        let id = match t.native_id {
            Some(n) => format!("tid {n}"),
            None => format!("{:#x}", t.thread_id),
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
        for f in t.frames.iter().rev() {
            writeln!(w, "    {} ({}:{})", f.function, f.file, f.line)?;
        }
    }
    Ok(())
}
