//! asyncio, read from outside: which task a thread's event loop is running, its name, and
//! the chain of tasks awaiting it (outermost first), without running code in the target.
//!
//! Versions are data here too. 3.14+ describe their own C `_asyncio.Task` and where the
//! running task is kept: `_Py_AsyncioModuleDebugOffsets`, in the ELF section
//! `.AsyncioDebug` of whatever holds the `_asyncio` module (the executable or libpython
//! when it is built in, else `_asyncio.cpython-3XY-….so`, mapped once asyncio is
//! imported). From that struct we read
//!
//! - `PyThreadState` (`_PyThreadStateImpl`) `asyncio_running_task`: the task the thread's
//!   loop is stepping right now (NULL between steps);
//! - `Task.task_name`: a `str`, or an `int` N for the default name `Task-N`;
//! - `Task.task_coro`: the coroutine, whose frame (3.11+: embedded in the coroutine
//!   object) is the outermost frame of the task on the thread's stack;
//! - `Task.task_awaited_by` (a future, or a `set` of them when `task_awaited_by_is_set`):
//!   the tasks awaiting this one, whether through `await task`, `gather` or a `TaskGroup`
//!   (3.14 records all three there).
//!
//! Older versions keep none of this in a form we read yet: `AsyncioReader::new` says so
//! and the caller reports it once, instead of guessing.
//!
//! Every loop is bounded (chain depth, set size) and checked for cycles; what cannot be
//! read is an error for one sample, counted by reason, never a crash.

use crate::process::maps::{self, MapRange};
use crate::process::Memory;
use crate::runtime::layout::{FrameKind, Layout};
use crate::runtime::objects::Objects;
use crate::walker::{RawFrame, RawThread};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The ELF section holding `_Py_AsyncioModuleDebugOffsets` (3.14+).
pub const DEBUG_SECTION: &str = ".AsyncioDebug";
/// Most tasks in one await chain we follow.
pub const MAX_CHAIN: usize = 256;
/// Most entries of a `task_awaited_by` set we look at.
pub const MAX_AWAITERS: u64 = 4096;
/// Most tasks of a thread's task list read in one pass (each is one read).
pub const MAX_LISTED_TASKS: usize = 20_000;
/// Least time between two passes over a thread's task list.
const LIST_INTERVAL: Duration = Duration::from_millis(250);
/// Most coroutine → task pairs remembered.
pub const MAX_KNOWN_TASKS: usize = 100_000;
/// 3.11+ `FRAME_OWNED_BY_GENERATOR`: a frame inside a generator or coroutine object.
const FRAME_OWNED_BY_GENERATOR: u8 = 1;

/// Where the fields asyncio profiling needs live, for one interpreter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsyncioOffsets {
    /// `sizeof(TaskObj)`
    pub task_size: u64,
    pub task_name: u64,
    pub task_coro: u64,
    pub task_awaited_by: u64,
    /// a byte: `task_awaited_by` is a set (1) or a single future (0)
    pub task_awaited_by_is_set: u64,
    /// a byte: the object is a Task (1), not a plain Future
    pub task_is_task: u64,
    /// `_PyThreadStateImpl.asyncio_running_task`
    pub tstate_running_task: u64,
    pub tstate_running_loop: u64,
    /// `Task.task_node`, the task's `llist_node` in its thread's list of tasks
    pub task_node: u64,
    /// `_PyThreadStateImpl.asyncio_tasks_head`, the head of that list
    pub tstate_tasks_head: u64,
}

/// `_Py_AsyncioModuleDebugOffsets` as 3.14 and 3.15 lay it out: 13 `uint64_t`s,
/// `asyncio_task_object {size, task_name, task_awaited_by, task_is_task,
/// task_awaited_by_is_set, task_coro, task_node}`, `asyncio_interpreter_state {size,
/// asyncio_tasks_head}`, `asyncio_thread_state {size, asyncio_running_loop,
/// asyncio_running_task, asyncio_tasks_head}`. Values that cannot be right give None.
pub fn parse_debug_offsets(b: &[u8]) -> Option<AsyncioOffsets> {
    if b.len() < 13 * 8 {
        return None;
    }
    let v: Vec<u64> = b[..13 * 8]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let o = AsyncioOffsets {
        task_size: v[0],
        task_name: v[1],
        task_awaited_by: v[2],
        task_is_task: v[3],
        task_awaited_by_is_set: v[4],
        task_coro: v[5],
        tstate_running_loop: v[10],
        tstate_running_task: v[11],
        task_node: v[6],
        tstate_tasks_head: v[12],
    };
    let task_fields = [
        o.task_name,
        o.task_awaited_by,
        o.task_is_task,
        o.task_awaited_by_is_set,
        o.task_coro,
        o.task_node,
    ];
    let tstate_size = v[9];
    let plausible = (16..=4096).contains(&o.task_size)
        && task_fields.iter().all(|&f| f >= 16 && f < o.task_size)
        && (64..=1 << 20).contains(&tstate_size)
        && o.tstate_running_task + 8 <= tstate_size
        && o.tstate_running_loop + 8 <= tstate_size
        && o.tstate_tasks_head + 16 <= tstate_size;
    plausible.then_some(o)
}

/// Find and read the target's `.AsyncioDebug` section: in a mapped file that has it
/// (the `_asyncio` extension, libpython or the executable), at its load address.
/// `Ok(None)`: no mapped file has one (yet: asyncio may not be imported).
pub fn find_debug_offsets(pid: i32, mem: &dyn Memory) -> Result<Option<AsyncioOffsets>, String> {
    let all = maps::read_maps(pid).map_err(|e| format!("reading /proc/{pid}/maps: {e}"))?;
    let mut paths: Vec<&str> = Vec::new();
    for m in &all {
        let name = m.file_name();
        let wanted = name.starts_with("_asyncio")
            || name.starts_with("libpython")
            || name.starts_with("python");
        if wanted && !m.path.is_empty() && !paths.contains(&m.path.as_str()) {
            paths.push(&m.path);
        }
    }
    for path in paths {
        let file_maps: Vec<&MapRange> = all.iter().filter(|m| m.path == path).collect();
        let Some(elf) = maps::target_file_paths(pid, file_maps[0])
            .iter()
            .find_map(|p| crate::process::elf::ElfInfo::open(p).ok())
        else {
            continue;
        };
        let Some((addr, size)) = elf.section(DEBUG_SECTION) else {
            continue;
        };
        let Some(bias) = elf.load_bias(&file_maps) else {
            continue;
        };
        let len = size.min(4096) as usize;
        let bytes = mem
            .read_vec(addr.wrapping_add(bias), len)
            .map_err(|_| format!("reading {DEBUG_SECTION} of {path}"))?;
        return match parse_debug_offsets(&bytes) {
            Some(o) => Ok(Some(o)),
            None => Err(format!(
                "{DEBUG_SECTION} of {path} does not hold plausible asyncio offsets"
            )),
        };
    }
    Ok(None)
}

/// The task a thread's loop is running, as the walker's stack is to show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskChain {
    /// Task names, outermost awaiter first, the running task last.
    pub names: Vec<String>,
    /// The running task's coroutine object.
    pub coro: u64,
}

/// Why the tasks of one sample could not be read (counted as "asyncio: …").
pub type AsyncError = &'static str;

/// Reads the running task of a thread, per sample. Knows the offsets of one target.
pub struct AsyncioReader {
    pid: i32,
    offsets: Option<AsyncioOffsets>,
    /// When to look for the debug section again (asyncio not imported yet).
    next_try: Option<Instant>,
    /// The section was found but unusable: never looked for again.
    pub failed: Option<String>,
    /// Coroutine → task, for the tasks seen running (to find a stack's own task).
    coros: HashMap<u64, u64>,
    /// 3.11+: where a coroutine's frame is inside the coroutine object (learned).
    frame_delta: Option<u64>,
    /// Per thread state: when its task list was last read.
    listed: HashMap<u64, Instant>,
    /// Task lists that had more tasks than `MAX_LISTED_TASKS` (read in part).
    pub lists_cut: u64,
}

impl AsyncioReader {
    /// A reader for a target of this layout's version, or why its tasks cannot be read.
    pub fn new(pid: i32, layout: &Layout) -> Result<AsyncioReader, String> {
        if (layout.major, layout.minor) < (3, 14) {
            return Err(format!(
                "--async-aware needs Python 3.14 or newer (this target runs {}.{}): older versions \
                 are not supported yet",
                layout.major, layout.minor
            ));
        }
        Ok(AsyncioReader {
            pid,
            offsets: None,
            next_try: None,
            failed: None,
            coros: HashMap::new(),
            frame_delta: None,
            listed: HashMap::new(),
            lists_cut: 0,
        })
    }

    /// A reader with known offsets (tests over an in-memory image).
    pub fn with_offsets(offsets: AsyncioOffsets) -> AsyncioReader {
        AsyncioReader {
            pid: 0,
            offsets: Some(offsets),
            next_try: None,
            failed: None,
            coros: HashMap::new(),
            frame_delta: None,
            listed: HashMap::new(),
            lists_cut: 0,
        }
    }

    pub fn offsets(&self) -> Option<&AsyncioOffsets> {
        self.offsets.as_ref()
    }

    /// The offsets, looked for at most once a second until the target has imported asyncio.
    fn ensure(&mut self, mem: &dyn Memory) -> Option<&AsyncioOffsets> {
        if self.offsets.is_none() && self.failed.is_none() {
            let now = Instant::now();
            if self.next_try.is_none_or(|t| now >= t) {
                match find_debug_offsets(self.pid, mem) {
                    Ok(Some(o)) => self.offsets = Some(o),
                    Ok(None) => self.next_try = Some(now + Duration::from_secs(1)),
                    Err(e) => self.failed = Some(e),
                }
            }
        }
        self.offsets.as_ref()
    }

    /// The task whose coroutine thread `raw`'s stack is running, the tasks awaiting it,
    /// and the index (leaf first) of the task's outermost frame in `raw.frames`; None when
    /// the stack runs no task (no event loop, or between two steps).
    ///
    /// The running task is `asyncio_running_task` of the thread state, read now; a
    /// sampler that copied the stack earlier (bpf, in the kernel) may have a stack of
    /// another task by then. So the stack decides: the task is the one whose coroutine's
    /// frame is on it, found through the running task, else (3.11+) through the tasks
    /// seen running before, by their coroutine's frame address. A running task whose
    /// coroutine is not on the stack is an error for this sample.
    pub fn running(
        &mut self,
        mem: &dyn Memory,
        layout: &Layout,
        raw: &RawThread,
        is_frame_of: &dyn Fn(&RawFrame, u64) -> bool,
    ) -> Result<Option<(TaskChain, usize)>, AsyncError> {
        let Some(o) = self.ensure(mem).cloned() else {
            return Ok(None);
        };
        let objs = Objects::new(mem, layout);
        let task = mem
            .read_u64(raw.tstate.wrapping_add(o.tstate_running_task))
            .map_err(|_| "thread state unreadable")?;
        if task != 0 {
            let b = read_task(mem, &objs, &o, task)?;
            let coro = field(&b, o.task_coro).ok_or("task unreadable")?;
            if let Some(at) = raw.frames.iter().rposition(|f| is_frame_of(f, coro)) {
                let f = raw.frames[at].frame;
                if layout.frame_kind == FrameKind::Interpreter && f > coro {
                    self.frame_delta = Some(f - coro);
                }
                if self.coros.len() >= MAX_KNOWN_TASKS {
                    self.coros.clear();
                }
                self.coros.insert(coro, task);
                let names = self.chain(mem, &objs, &o, task)?;
                return Ok(Some((TaskChain { names, coro }, at)));
            }
        }
        // The stack's own task: a coroutine frame (outermost first) of a task seen before,
        // or (read at most every LIST_INTERVAL) in the thread's list of tasks.
        if let Some(found) = self.known_task(mem, &objs, &o, raw)? {
            return Ok(Some(found));
        }
        if layout.frame_kind == FrameKind::Interpreter && self.list_tasks(mem, &o, raw.tstate) {
            if let Some(found) = self.known_task(mem, &objs, &o, raw)? {
                return Ok(Some(found));
            }
        }
        if task != 0 {
            return Err(
                "the running task's coroutine is not on the stack (it switched while read)",
            );
        }
        Ok(None)
    }

    /// Read the task list of thread state `tstate` into `coros` (bounded, rate-limited);
    /// false when it was read too recently.
    fn list_tasks(&mut self, mem: &dyn Memory, o: &AsyncioOffsets, tstate: u64) -> bool {
        let now = Instant::now();
        if self
            .listed
            .get(&tstate)
            .is_some_and(|t| now.duration_since(*t) < LIST_INTERVAL)
        {
            return false;
        }
        if self.listed.len() > 10_000 {
            self.listed.clear();
        }
        self.listed.insert(tstate, now);
        let head = tstate.wrapping_add(o.tstate_tasks_head);
        let Ok(mut node) = mem.read_u64(head) else {
            return true;
        };
        // From the task's coroutine to its node's `next`, in one read per task.
        let (lo, hi) = (
            o.task_coro.min(o.task_node),
            o.task_coro.max(o.task_node) + 8,
        );
        let mut n = 0;
        while node != head && plausible(node) {
            if n >= MAX_LISTED_TASKS {
                self.lists_cut += 1;
                break;
            }
            n += 1;
            let task = node.wrapping_sub(o.task_node);
            let Ok(b) = mem.read_vec(task.wrapping_add(lo), (hi - lo) as usize) else {
                break;
            };
            let (Some(coro), Some(next)) =
                (field(&b, o.task_coro - lo), field(&b, o.task_node - lo))
            else {
                break;
            };
            if plausible(coro) {
                if self.coros.len() >= MAX_KNOWN_TASKS {
                    self.coros.clear();
                }
                self.coros.insert(coro, task);
            }
            node = next;
        }
        true
    }

    /// The task of a coroutine frame on `raw`'s stack (outermost first), among the tasks
    /// whose coroutines are known.
    fn known_task(
        &mut self,
        mem: &dyn Memory,
        objs: &Objects,
        o: &AsyncioOffsets,
        raw: &RawThread,
    ) -> Result<Option<(TaskChain, usize)>, AsyncError> {
        // Where a coroutine's frame is in it: learned, else each place it can be.
        let deltas: Vec<u64> = match self.frame_delta {
            Some(d) => vec![d],
            None if self.coros.is_empty() => Vec::new(),
            None => (1..32).map(|k| k * 8).collect(),
        };
        for (at, f) in raw.frames.iter().enumerate().rev() {
            if f.owner != FRAME_OWNED_BY_GENERATOR {
                continue;
            }
            for &delta in &deltas {
                let coro = f.frame.wrapping_sub(delta);
                let Some(&known) = self.coros.get(&coro) else {
                    continue;
                };
                // A task that ended (its memory reused): forget it.
                let b = read_task(mem, objs, o, known).unwrap_or_default();
                if field(&b, o.task_coro) != Some(coro) {
                    self.coros.remove(&coro);
                    continue;
                }
                self.frame_delta = Some(delta);
                let names = self.chain(mem, objs, o, known)?;
                return Ok(Some((TaskChain { names, coro }, at)));
            }
        }
        Ok(None)
    }

    /// Names of `task` and the tasks awaiting it, outermost first.
    fn chain(
        &self,
        mem: &dyn Memory,
        objs: &Objects,
        o: &AsyncioOffsets,
        task: u64,
    ) -> Result<Vec<String>, AsyncError> {
        let mut chain = Vec::new();
        let mut seen = Vec::new();
        let mut cur = task;
        loop {
            if seen.contains(&cur) {
                return Err("await chain loops");
            }
            if seen.len() >= MAX_CHAIN {
                return Err("await chain too long");
            }
            seen.push(cur);
            let b = read_task(mem, objs, o, cur)?;
            chain.push(task_name(
                objs,
                field(&b, o.task_name).ok_or("task unreadable")?,
            )?);
            match awaiter(mem, objs, o, &b)? {
                Some(parent) => cur = parent,
                None => break,
            }
        }
        chain.reverse();
        Ok(chain)
    }
}

fn field(b: &[u8], off: u64) -> Option<u64> {
    let off = usize::try_from(off).ok()?;
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

fn plausible(p: u64) -> bool {
    (0x1000..=0x0000_ffff_ffff_ffff).contains(&p) && p & 7 == 0
}

/// A task's fixed part, in one read, checked to be a task.
fn read_task(
    mem: &dyn Memory,
    objs: &Objects,
    o: &AsyncioOffsets,
    task: u64,
) -> Result<Vec<u8>, AsyncError> {
    if !is_task(mem, objs, o, task) {
        return Err("not a Task object");
    }
    mem.read_vec(task, o.task_size as usize)
        .map_err(|_| "task unreadable")
}

/// Is `obj` a C Task (or a subclass): big enough for a task and flagged `task_is_task`?
fn is_task(mem: &dyn Memory, objs: &Objects, o: &AsyncioOffsets, obj: u64) -> bool {
    plausible(obj)
        && objs
            .basicsize_of(obj)
            .is_some_and(|s| s >= o.task_size as i64)
        && mem.read_u8(obj.wrapping_add(o.task_is_task)).ok() == Some(1)
}

/// `Task.get_name()`: the str, or `Task-N` for an int N (the default, formatted lazily).
fn task_name(objs: &Objects, name: u64) -> Result<String, AsyncError> {
    if let Some(s) = objs.read_str(name) {
        return Ok(s);
    }
    if let Some(n) = objs.read_int(name) {
        return Ok(format!("Task-{n}"));
    }
    Err("task name unreadable")
}

/// The first task awaiting the task whose fixed part is `b` (`task_awaited_by`).
fn awaiter(
    mem: &dyn Memory,
    objs: &Objects,
    o: &AsyncioOffsets,
    b: &[u8],
) -> Result<Option<u64>, AsyncError> {
    let by = field(b, o.task_awaited_by).ok_or("task unreadable")?;
    if by == 0 {
        return Ok(None);
    }
    let is_set = *b
        .get(o.task_awaited_by_is_set as usize)
        .ok_or("task unreadable")?;
    if is_set == 0 {
        return Ok(is_task(mem, objs, o, by).then_some(by));
    }
    // A set: PySetObject {header, fill, used, mask, table, …}; setentry {key, hash}.
    let head = objs.header_size();
    let mask = mem
        .read_u64(by.wrapping_add(head + 16))
        .map_err(|_| "awaited_by set unreadable")?;
    let table = mem
        .read_u64(by.wrapping_add(head + 24))
        .map_err(|_| "awaited_by set unreadable")?;
    let slots = mask.wrapping_add(1);
    if !slots.is_power_of_two() || !plausible(table) {
        return Err("awaited_by set unreadable");
    }
    let entries = mem
        .read_vec(table, (slots.min(MAX_AWAITERS) * 16) as usize)
        .map_err(|_| "awaited_by set unreadable")?;
    for e in entries.chunks_exact(16) {
        let key = u64::from_le_bytes(e[..8].try_into().unwrap());
        if key != 0 && is_task(mem, objs, o, key) {
            return Ok(Some(key));
        }
    }
    Ok(None)
}
