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
//!   (3.14 records all three there);
//! - the thread's list of tasks (`asyncio_tasks_head`, linked through `task_node`).
//!
//! 3.7–3.13 have no such struct: a built-in table ([`table_offsets`], found in each
//! interpreter with ctypes by `tests/scripts/asyncio_offsets.py` and checked against it by
//! `tests/asyncio.rs`) gives the Task and Future fields; the running task is
//! `asyncio.tasks._current_tasks[loop]` (the loop whose `_thread_id` is the thread's), and
//! who awaits a task is found through its done callbacks (`awaiter_by_callbacks`).
//! 3.7's tasks have no names: each is named after its coroutine's function and its
//! address. 3.6 and older are refused.
//!
//! The stack decides which task a sample is: the one whose coroutine's frame is on it
//! (see [`AsyncioReader::running`]). Every loop is bounded (chain depth, set and list
//! sizes, callbacks) and checked for cycles; what cannot be read is an error for one
//! sample, counted by reason, never a crash.

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
/// Most event loops (running at once, one per thread) we look at.
pub const MAX_LOOPS: usize = 1024;
/// Most done callbacks of one future we look at (≤3.13).
pub const MAX_CALLBACKS: u64 = 64;
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
    /// ≤3.13: what the built-in table adds (the fields above that 3.14 added are 0).
    pub table: Option<TableOffsets>,
    /// 3.14+: the callback fields of the built-in [`CALLBACK_TABLE`] (the debug offsets
    /// have none), to find who awaits a pure-Python task (`task_fut_waiter` unused).
    pub callbacks: Option<TableOffsets>,
}

/// ≤3.13: the C `_asyncio.Task`/`Future` fields we read, and the callables a task leaves
/// in the callbacks of what it awaits. Found in each interpreter by
/// `tests/scripts/asyncio_offsets.py` (ctypes over live objects); `tests/asyncio.rs`
/// checks the table against every interpreter it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableOffsets {
    pub task_fut_waiter: u64,
    /// `fut_callback0` (the first done callback), `fut_callbacks` (a list of the others,
    /// each a `(callback, context)` tuple)
    pub fut_callback0: u64,
    pub fut_callbacks: u64,
    /// Where the callable a task awaiting a future adds to its callbacks holds that task:
    /// `TaskWakeupMethWrapper.ww_task` (3.7–3.9), `PyCFunctionObject.m_self` (3.10+)
    pub wakeup_task: u64,
    /// `PyFunctionObject.func_closure` (gather's `_done_callback` closes over its outer
    /// future)
    pub func_closure: u64,
}

/// The built-in table for ≤3.13: (minor, free-threaded) → (`sizeof(TaskObj)`,
/// `task_name`, `task_coro`, `task_fut_waiter`, `fut_callback0`, `fut_callbacks`,
/// wakeup's task, `func_closure`). Values printed by tests/scripts/asyncio_offsets.py.
const TABLE: &[((u8, bool), [u64; 8])] = &[
    // 3.7: no task_name (0): a task is named after its coroutine (see `coro_names`).
    ((7, false), [136, 0, 112, 104, 24, 40, 16, 48]),
    ((8, false), [144, 120, 112, 104, 24, 40, 16, 48]),
    ((9, false), [184, 160, 152, 144, 24, 40, 16, 48]),
    ((10, false), [192, 168, 160, 152, 24, 40, 24, 72]),
    ((11, false), [176, 144, 136, 128, 24, 40, 24, 72]),
    ((12, false), [176, 144, 136, 128, 24, 40, 24, 72]),
    ((13, false), [144, 128, 120, 112, 24, 40, 24, 72]),
    ((13, true), [160, 144, 136, 128, 40, 56, 40, 88]),
];

/// How often a target that has not imported asyncio yet is looked at again: for the
/// `_asyncio` module's debug offsets (3.14+: its ELF section, a read of the process's
/// maps), and for `asyncio.tasks._current_tasks` (≤3.13: a few dict lookups). A
/// program launched under pyprof imports asyncio a moment after it starts; its first
/// tasks are missed for at most this long.
const OFFSETS_RETRY: Duration = Duration::from_millis(250);
const LOOKUP_RETRY: Duration = Duration::from_millis(100);

/// The built-in offsets of a 3.7–3.13 interpreter.
pub fn table_offsets(major: u8, minor: u8, free_threaded: bool) -> Option<AsyncioOffsets> {
    if major != 3 {
        return None;
    }
    let v = TABLE.iter().find(|e| e.0 == (minor, free_threaded))?.1;
    Some(AsyncioOffsets {
        task_size: v[0],
        task_name: v[1],
        task_coro: v[2],
        task_awaited_by: 0,
        task_awaited_by_is_set: 0,
        task_is_task: 0,
        tstate_running_task: 0,
        tstate_running_loop: 0,
        task_node: 0,
        tstate_tasks_head: 0,
        table: Some(TableOffsets {
            task_fut_waiter: v[3],
            fut_callback0: v[4],
            fut_callbacks: v[5],
            wakeup_task: v[6],
            func_closure: v[7],
        }),
        callbacks: None,
    })
}

/// 3.14+: (minor, free-threaded) → (`fut_callback0`, `fut_callbacks`, wakeup's task,
/// `func_closure`), printed by tests/scripts/asyncio_offsets.py and checked by
/// tests/asyncio.rs against every 3.14+ interpreter it runs (the free-threaded builds are
/// not installed here: not in the table). Only pure-Python tasks need them: the C tasks
/// of 3.14+ record who awaits them (`task_awaited_by`); the pure-Python ones do not.
const CALLBACK_TABLE: &[((u8, bool), [u64; 4])] = &[
    ((14, false), [24, 40, 24, 72]),
    ((15, false), [24, 40, 24, 72]),
];

/// The callback fields of a 3.14+ interpreter, if the table has them.
pub fn callback_offsets(major: u8, minor: u8, free_threaded: bool) -> Option<TableOffsets> {
    if major != 3 {
        return None;
    }
    let v = CALLBACK_TABLE
        .iter()
        .find(|e| e.0 == (minor, free_threaded))?
        .1;
    Some(TableOffsets {
        task_fut_waiter: 0,
        fut_callback0: v[0],
        fut_callbacks: v[1],
        wakeup_task: v[2],
        func_closure: v[3],
    })
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
        table: None,
        callbacks: None,
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

/// One pending task of a thread's loop (see [`AsyncioReader::thread_tasks`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    pub task: u64,
    /// Its coroutine.
    pub coro: u64,
    /// Its name and those of the tasks awaiting it, outermost first (its own last).
    pub names: Vec<String>,
    /// Where each awaiting task is suspended (as `frames`), aligned with `names`
    /// without the last: the awaiter's frames sit between its name and the next.
    pub awaiter_frames: Vec<Vec<RawFrame>>,
    /// Where it is suspended, leaf first: the frame of the innermost coroutine it
    /// awaits, …, its own coroutine's frame. Empty for the running task.
    pub frames: Vec<RawFrame>,
    /// Another task awaits this one (its stack is part of that task's story).
    pub awaited: bool,
    /// The task the thread's loop is running now.
    pub running: bool,
}

/// The frames of coroutine `coro` and of what it awaits, in turn (coroutines and
/// generators, while suspended), leaf first; empty when `coro` is finished (or not
/// started); None when it is running now.
pub fn coroutine_chain(
    mem: &dyn Memory,
    walker: &crate::walker::Walker,
    objs: &Objects,
    coro: u64,
) -> Option<Vec<RawFrame>> {
    use crate::walker::GenState;
    let mut frames = Vec::new();
    let mut gen = coro;
    while frames.len() < MAX_CHAIN {
        let (rf, top) = match walker.suspended_frame(mem, gen) {
            Ok(GenState::Suspended(rf, top)) => (rf, top),
            Ok(GenState::Executing) if frames.is_empty() => return None,
            _ => break,
        };
        frames.push(rf);
        if top == 0 || frames.iter().any(|f| f.frame == top) {
            break;
        }
        match objs.type_name(top).as_deref() {
            Some("coroutine" | "generator") => gen = top,
            _ => break,
        }
    }
    // Read from a running target: the coroutine may have been resumed meanwhile (its
    // stack then no longer says what it awaits). Still suspended where it was, or it
    // counts as running.
    if let Some(first) = frames.first() {
        match walker.suspended_frame(mem, coro) {
            Ok(GenState::Suspended(rf, _)) if rf.instr == first.instr => {}
            Ok(GenState::Gone) => return Some(Vec::new()),
            _ => return None,
        }
    }
    frames.reverse();
    Some(frames)
}

/// Why the tasks of one sample could not be read (counted as "asyncio: …").
pub type AsyncError = &'static str;

/// Reads the running task of a thread, per sample. Knows the offsets of one target.
pub struct AsyncioReader {
    pid: i32,
    /// 3.7 (tasks have no name): where a coroutine's frame, the frame's code and the
    /// code's name are (`gen_frame`, `frame_code`, `code_name`).
    coro_names: Option<(u32, u32, u32)>,
    /// The target's callback fields (3.14+, see [`callback_offsets`]).
    callbacks: Option<TableOffsets>,
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
    /// ≤3.13: `asyncio.tasks._current_tasks` ({loop: running task}), when found, and when
    /// to look for it again.
    current_tasks: Option<u64>,
    next_lookup: Option<Instant>,
    /// ≤3.13: each loop's `_thread_id` and when it was read.
    loop_threads: HashMap<u64, (Option<u64>, Instant)>,
    /// ≤3.13: the `asyncio.tasks` module's dict (where its task registries are).
    tasks_module: Option<u64>,
    /// ≤3.10: a coroutine's frame object → the coroutine.
    frame_coros: HashMap<u64, u64>,
    /// Task types seen in the registries: a C task's (true) or not.
    task_types: HashMap<u64, bool>,
    /// Where an object's type is (`ob_type`).
    ob_type: u64,
}

impl AsyncioReader {
    /// A reader for a target of this layout's version, or why its tasks cannot be read.
    pub fn new(pid: i32, layout: &Layout) -> Result<AsyncioReader, String> {
        let v = (layout.major, layout.minor);
        let table = table_offsets(layout.major, layout.minor, layout.free_threaded);
        if v < (3, 14) && table.is_none() {
            return Err(format!(
                "--async-aware supports Python 3.7 and newer (this target runs {}.{}{})",
                layout.major,
                layout.minor,
                if layout.free_threaded { "t" } else { "" }
            ));
        }
        Ok(AsyncioReader {
            pid,
            callbacks: callback_offsets(layout.major, layout.minor, layout.free_threaded),
            coro_names: (v < (3, 8)).then_some((
                layout.gen_frame,
                layout.frame_code,
                layout.code_name,
            )),
            ob_type: layout.ob_type as u64,
            ..AsyncioReader::blank(table)
        })
    }

    /// A reader with known offsets (tests over an in-memory image).
    pub fn with_offsets(offsets: AsyncioOffsets) -> AsyncioReader {
        AsyncioReader::blank(Some(offsets))
    }

    /// A reader that has learned nothing yet.
    fn blank(offsets: Option<AsyncioOffsets>) -> AsyncioReader {
        AsyncioReader {
            pid: 0,
            callbacks: None,
            coro_names: None,
            offsets,
            next_try: None,
            failed: None,
            coros: HashMap::new(),
            frame_delta: None,
            listed: HashMap::new(),
            lists_cut: 0,
            current_tasks: None,
            next_lookup: None,
            loop_threads: HashMap::new(),
            tasks_module: None,
            frame_coros: HashMap::new(),
            task_types: HashMap::new(),
            ob_type: 8,
        }
    }

    pub fn offsets(&self) -> Option<&AsyncioOffsets> {
        self.offsets.as_ref()
    }

    /// Was asyncio found in the target (3.14+: its debug offsets; ≤3.13: the
    /// `asyncio.tasks._current_tasks` dict)?
    pub fn found_asyncio(&self) -> bool {
        match &self.offsets {
            Some(o) if o.table.is_some() => self.current_tasks.is_some(),
            Some(_) => true,
            None => false,
        }
    }

    /// The offsets, looked for every OFFSETS_RETRY until the target has imported asyncio.
    fn ensure(&mut self, mem: &dyn Memory) -> Option<&AsyncioOffsets> {
        if self.offsets.is_none() && self.failed.is_none() {
            let now = Instant::now();
            if self.next_try.is_none_or(|t| now >= t) {
                match find_debug_offsets(self.pid, mem) {
                    Ok(Some(o)) => {
                        self.offsets = Some(AsyncioOffsets {
                            callbacks: self.callbacks,
                            ..o
                        })
                    }
                    Ok(None) => self.next_try = Some(now + OFFSETS_RETRY),
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
        // 3.11+: a stack without a coroutine's frame runs no task, whatever task the
        // thread runs now (a stack copied earlier, by bpf, may be of the loop between two
        // steps; a frozen one, of a task about to enter its coroutine).
        if layout.frame_kind == FrameKind::Interpreter
            && !raw
                .frames
                .iter()
                .any(|f| f.owner == FRAME_OWNED_BY_GENERATOR)
        {
            return Ok(None);
        }
        let objs = Objects::new(mem, layout);
        let task = match o.table {
            None => match mem
                .read_u64(raw.tstate.wrapping_add(o.tstate_running_task))
                .map_err(|_| "thread state unreadable")?
            {
                // 3.14+ pure-Python tasks enter `asyncio.tasks._current_tasks` instead.
                0 => self.current_task(mem, layout, &objs, raw).unwrap_or(0),
                t => t,
            },
            Some(_) => self.current_task(mem, layout, &objs, raw)?,
        };
        if task != 0 {
            let coro = read_task(mem, &objs, &o, task)?.coro;
            if let Some(at) = raw.frames.iter().rposition(|f| is_frame_of(f, coro)) {
                let f = raw.frames[at].frame;
                if layout.frame_kind == FrameKind::Interpreter && f > coro {
                    self.frame_delta = Some(f - coro);
                } else if layout.frame_kind == FrameKind::Object {
                    if self.frame_coros.len() >= MAX_KNOWN_TASKS {
                        self.frame_coros.clear();
                    }
                    self.frame_coros.insert(f, coro);
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
        // Worth listing the tasks only when the stack may run one we do not know: 3.11+,
        // it has a coroutine's frame (checked above) and none is known; ≤3.10 (frames do
        // not say whose they are), the running task is not on it.
        let worth = match layout.frame_kind {
            FrameKind::Interpreter => true,
            FrameKind::Object => task != 0,
        };
        let listed = worth
            && match o.table {
                None => {
                    layout.frame_kind == FrameKind::Interpreter
                        && self.list_tasks(mem, &o, raw.tstate)
                }
                Some(_) => self.list_registered(mem, layout, &objs, &o),
            };
        if listed {
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

    /// ≤3.13: the task thread `raw`'s loop runs, from `asyncio.tasks._current_tasks`
    /// ({loop: task}; the loop whose `_thread_id` is the thread's), or 0.
    fn current_task(
        &mut self,
        mem: &dyn Memory,
        layout: &Layout,
        objs: &Objects,
        raw: &RawThread,
    ) -> Result<u64, AsyncError> {
        let now = Instant::now();
        if self.current_tasks.is_none() && self.next_lookup.is_none_or(|t| now >= t) {
            self.next_lookup = Some(now + LOOKUP_RETRY);
            self.current_tasks = (|| {
                let interp = mem
                    .read_u64(raw.tstate.wrapping_add(layout.tstate_interp as u64))
                    .ok()?;
                let modules = mem
                    .read_u64(interp.wrapping_add(layout.interp_modules as u64))
                    .ok()?;
                let tasks = objs.dict_get_str(modules, "asyncio.tasks")?;
                let md = mem
                    .read_u64(tasks.wrapping_add(layout.module_dict as u64))
                    .ok()?;
                self.tasks_module = Some(md);
                let current = objs.dict_get_str(md, "_current_tasks")?;
                objs.is_dict(current).then_some(current)
            })();
        }
        let Some(dict) = self.current_tasks else {
            return Ok(0);
        };
        let entries = objs
            .dict_entries(dict)
            .ok_or("asyncio.tasks._current_tasks unreadable")?;
        let mut fallback = 0;
        for e in entries.iter().take(MAX_LOOPS) {
            let thread = self.loop_thread(objs, e.key);
            match thread {
                Some(t) if t == raw.thread_id => return Ok(e.value),
                None if entries.len() == 1 => fallback = e.value,
                _ => {}
            }
        }
        Ok(fallback)
    }

    /// Is `task`, of type `tp`, a C task (checked once per type, then remembered)?
    fn is_c_task_type(
        &mut self,
        mem: &dyn Memory,
        objs: &Objects,
        o: &AsyncioOffsets,
        tp: u64,
        task: u64,
    ) -> bool {
        if let Some(&c) = self.task_types.get(&tp) {
            return c;
        }
        let c = is_task(mem, objs, o, task);
        if self.task_types.len() > 1024 {
            self.task_types.clear();
        }
        self.task_types.insert(tp, c);
        c
    }

    /// A registered task's coroutine: one read for a C task (its type checked once per
    /// type), the `_coro` attribute of a pure-Python one.
    fn coro_of(
        &mut self,
        mem: &dyn Memory,
        objs: &Objects,
        o: &AsyncioOffsets,
        task: u64,
    ) -> Option<u64> {
        // One read from the header through `task_coro`: the type and the coroutine.
        let b = mem.read_vec(task, (o.task_coro + 8) as usize).ok()?;
        let tp = field(&b, self.ob_type)?;
        if self.is_c_task_type(mem, objs, o, tp, task) {
            field(&b, o.task_coro)
        } else {
            py_task(objs, task).map(|t| t.0)
        }
    }

    /// ≤3.13: the thread running event loop `lp` (its `_thread_id`; None when it is not
    /// running), read at most once a second.
    fn loop_thread(&mut self, objs: &Objects, lp: u64) -> Option<u64> {
        let now = Instant::now();
        match self.loop_threads.get(&lp) {
            Some(&(t, at)) if now.duration_since(at) < Duration::from_secs(1) => t,
            _ => {
                let t = objs
                    .instance_attr(lp, "_thread_id")
                    .and_then(|id| objs.read_uint(id));
                if self.loop_threads.len() > MAX_LOOPS {
                    self.loop_threads.clear();
                }
                self.loop_threads.insert(lp, (t, now));
                t
            }
        }
    }

    /// ≤3.13: read the tasks asyncio registers (`_all_tasks` ≤3.11, `_scheduled_tasks`
    /// (WeakSets) and `_eager_tasks` (a set) 3.12+) into `coros` (and, ≤3.10, the
    /// coroutines' frames into `frame_coros`); bounded, at most every `LIST_INTERVAL`.
    /// False when read too recently or not found.
    fn list_registered(
        &mut self,
        mem: &dyn Memory,
        layout: &Layout,
        objs: &Objects,
        o: &AsyncioOffsets,
    ) -> bool {
        if self.tasks_module.is_none() {
            return false;
        }
        let now = Instant::now();
        if self
            .listed
            .get(&0)
            .is_some_and(|t| now.duration_since(*t) < LIST_INTERVAL)
        {
            return false;
        }
        self.listed.insert(0, now);
        let head = objs.header_size();
        let tasks = self.registered(mem, objs);
        for task in tasks {
            let Some(coro) = self.coro_of(mem, objs, o, task) else {
                continue;
            };
            if !plausible(coro) {
                continue;
            }
            if self.coros.len() >= MAX_KNOWN_TASKS {
                self.coros.clear();
            }
            self.coros.insert(coro, task);
            if layout.frame_kind == FrameKind::Object {
                // gi_frame, the field after the header (NULL once the coroutine ended).
                if let Ok(frame) = mem.read_u64(coro.wrapping_add(head)) {
                    if plausible(frame) {
                        if self.frame_coros.len() >= MAX_KNOWN_TASKS {
                            self.frame_coros.clear();
                        }
                        self.frame_coros.insert(frame, coro);
                    }
                }
            }
        }
        true
    }

    /// Every pending task of thread `raw`'s event loop (bounded by `MAX_LISTED_TASKS`):
    /// its name and those of the tasks awaiting it, where its coroutine is suspended, and
    /// whether it awaits another task or runs now. Finished tasks are left out, and so
    /// are tasks not started yet. Empty when the thread runs no loop (or asyncio was not
    /// imported).
    ///
    /// 3.14+ reads the thread's own task list; ≤3.13 asyncio's registries
    /// (`_all_tasks`, `_scheduled_tasks`, `_eager_tasks`), keeping the tasks of the
    /// thread's loop (its `_loop`), once that loop has been seen running a task.
    pub fn thread_tasks(
        &mut self,
        mem: &dyn Memory,
        walker: &crate::walker::Walker,
        raw: &RawThread,
    ) -> Result<Vec<TaskInfo>, AsyncError> {
        let layout = &walker.layout;
        let Some(o) = self.ensure(mem).cloned() else {
            return Ok(Vec::new());
        };
        let objs = Objects::new(mem, layout);
        let (running, tasks) = match o.table {
            None => {
                // (Also finds asyncio.tasks' registries, for the pure-Python tasks.)
                let py_running = self.current_task(mem, layout, &objs, raw).unwrap_or(0);
                let running = match mem
                    .read_u64(raw.tstate.wrapping_add(o.tstate_running_task))
                    .map_err(|_| "thread state unreadable")?
                {
                    0 => py_running,
                    t => t,
                };
                let mut tasks: Vec<u64> = self
                    .task_list(mem, &o, raw.tstate)
                    .into_iter()
                    .map(|t| t.0)
                    .collect();
                // Pure-Python tasks are not in the thread's list: asyncio's registries.
                tasks.extend(self.registered_of_thread(mem, &objs, raw.thread_id));
                (running, tasks)
            }
            Some(_) => {
                let running = self.current_task(mem, layout, &objs, raw)?;
                let mine = self.registered_of_thread(mem, &objs, raw.thread_id);
                (running, mine)
            }
        };
        // (task, name, awaiter, coroutine)
        let mut read: Vec<(u64, String, Option<u64>, u64)> = Vec::with_capacity(tasks.len());
        let mut seen = std::collections::HashSet::new();
        for task in tasks {
            if !seen.insert(task) {
                continue;
            }
            let Ok(t) = read_task(mem, &objs, &o, task) else {
                continue;
            };
            let coro = t.coro;
            let Ok(name) = self.name_of(mem, &objs, &t) else {
                continue;
            };
            let by = awaiter(mem, &objs, &o, &t).ok().flatten();
            read.push((task, name, by, coro));
        }
        let index: HashMap<u64, usize> = read.iter().enumerate().map(|(i, t)| (t.0, i)).collect();
        let awaiting: std::collections::HashSet<u64> = read.iter().filter_map(|t| t.2).collect();
        // Where each task's coroutine is suspended (empty: running, finished or not
        // started).
        // (A task whose coroutine runs now is running, whatever was read before.)
        let frames: Vec<Option<Vec<RawFrame>>> = read
            .iter()
            .map(|t| {
                if t.0 == running {
                    None
                } else {
                    coroutine_chain(mem, walker, &objs, t.3)
                }
            })
            .collect();
        let is_running: Vec<bool> = frames.iter().map(|f| f.is_none()).collect();
        let frames: Vec<Vec<RawFrame>> =
            frames.into_iter().map(Option::unwrap_or_default).collect();
        let mut out = Vec::with_capacity(read.len());
        for (i, (task, name, by, coro)) in read.iter().enumerate() {
            let is_running = is_running[i];
            if frames[i].is_empty() && !is_running {
                continue; // finished (or not started)
            }
            let mut names = vec![name.clone()];
            let mut awaiter_frames = Vec::new();
            let mut cur = *by;
            while let Some(parent) = cur {
                if names.len() >= MAX_CHAIN {
                    break;
                }
                match index.get(&parent) {
                    Some(&j) if j != i => {
                        names.push(read[j].1.clone());
                        awaiter_frames.push(frames[j].clone());
                        cur = read[j].2;
                    }
                    Some(_) => break,
                    None => {
                        // A parent outside the list: read its chain the usual way.
                        if let Ok(rest) = self.chain(mem, &objs, &o, parent) {
                            for n in rest.into_iter().rev() {
                                names.push(n);
                                awaiter_frames.push(Vec::new());
                            }
                        }
                        break;
                    }
                }
            }
            names.reverse();
            awaiter_frames.reverse();
            out.push(TaskInfo {
                task: *task,
                coro: *coro,
                names,
                awaiter_frames,
                frames: frames[i].clone(),
                awaited: awaiting.contains(task),
                running: is_running,
            });
        }
        Ok(out)
    }

    /// The tasks in asyncio's registries whose loop runs on thread `thread_id` (a C
    /// task's loop is its first field after the header, a pure-Python one's `_loop`; a
    /// loop's thread, its `_thread_id`, set while it runs).
    fn registered_of_thread(
        &mut self,
        mem: &dyn Memory,
        objs: &Objects,
        thread_id: u64,
    ) -> Vec<u64> {
        let Some(o) = self.offsets.clone() else {
            return Vec::new();
        };
        let head = objs.header_size();
        let mut mine = Vec::new();
        let mut loops: HashMap<u64, bool> = HashMap::new();
        for t in self.registered(mem, objs) {
            let Some(tp) = objs.type_of(t) else {
                continue;
            };
            let lp = if self.is_c_task_type(mem, objs, &o, tp, t) {
                mem.read_u64(t.wrapping_add(head)).ok()
            } else {
                objs.instance_attr(t, "_loop")
            };
            let Some(lp) = lp else {
                continue;
            };
            let ours = match loops.get(&lp) {
                Some(&b) => b,
                None => {
                    let b = self.loop_thread(objs, lp) == Some(thread_id);
                    loops.insert(lp, b);
                    b
                }
            };
            if ours {
                mine.push(t);
            }
        }
        mine
    }

    /// ≤3.13: the tasks in asyncio's registries (bounded).
    fn registered(&mut self, mem: &dyn Memory, objs: &Objects) -> Vec<u64> {
        let Some(md) = self.tasks_module else {
            return Vec::new();
        };
        let head = objs.header_size();
        let mut tasks = Vec::new();
        for name in ["_all_tasks", "_scheduled_tasks", "_eager_tasks"] {
            let Some(reg) = objs.dict_get_str(md, name) else {
                continue;
            };
            // A WeakSet keeps weak references in its `data` set; a set, the tasks.
            let (set, weak) = match objs.instance_attr(reg, "data") {
                Some(data) => (data, true),
                None => (reg, false),
            };
            let Ok(keys) = set_keys(mem, objs, set, MAX_LISTED_TASKS as u64 * 4) else {
                continue;
            };
            for k in keys {
                if tasks.len() >= MAX_LISTED_TASKS {
                    self.lists_cut += 1;
                    break;
                }
                // PyWeakReference {header, wr_object, …}
                let task = if weak {
                    mem.read_u64(k.wrapping_add(head)).unwrap_or(0)
                } else {
                    k
                };
                if plausible(task) {
                    tasks.push(task);
                }
            }
        }
        tasks
    }

    /// 3.14+: the (task, coroutine) pairs of thread state `tstate`'s task list (bounded).
    fn task_list(&mut self, mem: &dyn Memory, o: &AsyncioOffsets, tstate: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let head = tstate.wrapping_add(o.tstate_tasks_head);
        let Ok(mut node) = mem.read_u64(head) else {
            return out;
        };
        // From the task's coroutine to its node's `next`, in one read per task.
        let (lo, hi) = (
            o.task_coro.min(o.task_node),
            o.task_coro.max(o.task_node) + 8,
        );
        while node != head && plausible(node) {
            if out.len() >= MAX_LISTED_TASKS {
                self.lists_cut += 1;
                break;
            }
            let task = node.wrapping_sub(o.task_node);
            let Ok(b) = mem.read_vec(task.wrapping_add(lo), (hi - lo) as usize) else {
                break;
            };
            let (Some(coro), Some(next)) =
                (field(&b, o.task_coro - lo), field(&b, o.task_node - lo))
            else {
                break;
            };
            out.push((task, coro));
            node = next;
        }
        out
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
        for (task, coro) in self.task_list(mem, o, tstate) {
            if plausible(coro) {
                if self.coros.len() >= MAX_KNOWN_TASKS {
                    self.coros.clear();
                }
                self.coros.insert(coro, task);
            }
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
        // ≤3.10: frame objects of known coroutines.
        for (at, f) in raw.frames.iter().enumerate().rev() {
            let Some(&coro) = self.frame_coros.get(&f.frame) else {
                continue;
            };
            let Some(&known) = self.coros.get(&coro) else {
                continue;
            };
            if read_task(mem, objs, o, known).ok().map(|t| t.coro) != Some(coro) {
                self.frame_coros.remove(&f.frame);
                continue;
            }
            let names = self.chain(mem, objs, o, known)?;
            return Ok(Some((TaskChain { names, coro }, at)));
        }
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
                if read_task(mem, objs, o, known).ok().map(|t| t.coro) != Some(coro) {
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

    /// A task's name: `Task.get_name()`; on 3.7, whose tasks have none, its coroutine's
    /// function and the task's address (`worker@0x7f…`: tasks of one function apart).
    fn name_of(
        &self,
        mem: &dyn Memory,
        objs: &Objects,
        t: &TaskRead,
    ) -> Result<String, AsyncError> {
        let Some((gen_frame, frame_code, code_name)) = self.coro_names else {
            return task_name(objs, t.name);
        };
        let func = (|| {
            let frame = mem.read_u64(t.coro.wrapping_add(gen_frame as u64)).ok()?;
            let code = mem.read_u64(frame.wrapping_add(frame_code as u64)).ok()?;
            let name = mem.read_u64(code.wrapping_add(code_name as u64)).ok()?;
            objs.read_str(name)
        })();
        Ok(format!(
            "{}@{:#x}",
            func.as_deref().unwrap_or("task"),
            t.obj
        ))
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
            let t = read_task(mem, objs, o, cur)?;
            chain.push(self.name_of(mem, objs, &t)?);
            match awaiter(mem, objs, o, &t)? {
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

/// A task as read: its coroutine and name object, and a C task's fixed part (in one
/// read); a pure-Python task (`asyncio.tasks._PyTask`) has its attributes instead.
struct TaskRead {
    obj: u64,
    coro: u64,
    name: u64,
    fixed: Option<Vec<u8>>,
}

/// Read `task`, checked to be a C task or a pure-Python one.
fn read_task(
    mem: &dyn Memory,
    objs: &Objects,
    o: &AsyncioOffsets,
    task: u64,
) -> Result<TaskRead, AsyncError> {
    if is_task(mem, objs, o, task) {
        let b = mem
            .read_vec(task, o.task_size as usize)
            .map_err(|_| "task unreadable")?;
        let (Some(coro), Some(name)) = (field(&b, o.task_coro), field(&b, o.task_name)) else {
            return Err("task unreadable");
        };
        return Ok(TaskRead {
            obj: task,
            coro,
            name,
            fixed: Some(b),
        });
    }
    match py_task(objs, task) {
        Some((coro, name)) => Ok(TaskRead {
            obj: task,
            coro,
            name,
            fixed: None,
        }),
        None => Err("not a Task object"),
    }
}

/// A pure-Python task (`asyncio.tasks._PyTask`, or a subclass): its `_coro` and `_name`
/// (0 on 3.7).
fn py_task(objs: &Objects, obj: u64) -> Option<(u64, u64)> {
    if !plausible(obj) || !objs.type_name(obj)?.contains("Task") {
        return None;
    }
    let coro = objs.instance_attr(obj, "_coro")?;
    // (3.7's have no `_name`: named after their coroutine, as the C ones.)
    let name = objs.instance_attr(obj, "_name").unwrap_or(0);
    Some((coro, name))
}

/// A C task or a pure-Python one.
fn is_any_task(mem: &dyn Memory, objs: &Objects, o: &AsyncioOffsets, obj: u64) -> bool {
    is_task(mem, objs, o, obj) || py_task(objs, obj).is_some()
}

/// Is `obj` a C Task (or a subclass): big enough for a task and flagged `task_is_task`?
fn is_task(mem: &dyn Memory, objs: &Objects, o: &AsyncioOffsets, obj: u64) -> bool {
    plausible(obj)
        && objs
            .basicsize_of(obj)
            .is_some_and(|s| s >= o.task_size as i64)
        && match o.table {
            None => mem.read_u8(obj.wrapping_add(o.task_is_task)).ok() == Some(1),
            Some(_) => objs.type_name(obj).is_some_and(|n| n.ends_with("Task")),
        }
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

/// The first task awaiting task `t` (`task_awaited_by`; ≤3.13, from its callbacks).
fn awaiter(
    mem: &dyn Memory,
    objs: &Objects,
    o: &AsyncioOffsets,
    t: &TaskRead,
) -> Result<Option<u64>, AsyncError> {
    let Some(b) = &t.fixed else {
        // A pure-Python task: its `_callbacks` list.
        return Ok(match o.table.or(o.callbacks) {
            Some(table) => {
                let cbs = objs
                    .instance_attr(t.obj, "_callbacks")
                    .filter(|&l| objs.type_name(l).as_deref() == Some("list"))
                    .unwrap_or(0);
                awaiter_by_callbacks(mem, objs, o, &table, 0, cbs, 0)
            }
            None => None,
        });
    };
    let b = b.as_slice();
    if let Some(t) = o.table {
        let cb0 = field(b, t.fut_callback0).ok_or("task unreadable")?;
        let cbs = field(b, t.fut_callbacks).ok_or("task unreadable")?;
        return Ok(awaiter_by_callbacks(mem, objs, o, &t, cb0, cbs, 0));
    }
    let by = field(b, o.task_awaited_by).ok_or("task unreadable")?;
    if by == 0 {
        // (A pure-Python task awaiting it is not recorded there: its wakeup callback.)
        return Ok(o.callbacks.and_then(|t| {
            let cb0 = field(b, t.fut_callback0)?;
            let cbs = field(b, t.fut_callbacks)?;
            awaiter_by_callbacks(mem, objs, o, &t, cb0, cbs, 0)
        }));
    }
    let is_set = *b
        .get(o.task_awaited_by_is_set as usize)
        .ok_or("task unreadable")?;
    if is_set == 0 {
        return Ok(is_any_task(mem, objs, o, by).then_some(by));
    }
    let keys = set_keys(mem, objs, by, MAX_AWAITERS).map_err(|_| "awaited_by set unreadable")?;
    Ok(keys.into_iter().find(|&k| is_any_task(mem, objs, o, k)))
}

/// The keys of a `set` (PySetObject {header, fill, used, mask, table, …}; setentry {key,
/// hash}), from its first `max_slots` slots, in one read; dummies of deleted keys
/// included (callers check what they get).
fn set_keys(mem: &dyn Memory, objs: &Objects, set: u64, max_slots: u64) -> Result<Vec<u64>, ()> {
    let head = objs.header_size();
    let mask = mem.read_u64(set.wrapping_add(head + 16)).map_err(|_| ())?;
    let table = mem.read_u64(set.wrapping_add(head + 24)).map_err(|_| ())?;
    let slots = mask.wrapping_add(1);
    if !slots.is_power_of_two() || !plausible(table) {
        return Err(());
    }
    let entries = mem
        .read_vec(table, (slots.min(max_slots) * 16) as usize)
        .map_err(|_| ())?;
    Ok(entries
        .chunks_exact(16)
        .map(|e| u64::from_le_bytes(e[..8].try_into().unwrap()))
        .filter(|&k| plausible(k))
        .collect())
}

/// ≤3.13: the task awaiting a future, from its done callbacks (`callback0`, then the
/// `callbacks` list): a task's wakeup (`await fut`), a TaskGroup's `_on_task_done` bound
/// method (its `_parent_task`), or gather's `_done_callback`, whose closure holds the
/// outer `_GatheringFuture`, followed in turn. None when no callback leads to a task.
fn awaiter_by_callbacks(
    mem: &dyn Memory,
    objs: &Objects,
    o: &AsyncioOffsets,
    t: &TableOffsets,
    cb0: u64,
    cbs: u64,
    depth: usize,
) -> Option<u64> {
    if depth > 4 {
        return None;
    }
    let head = objs.header_size();
    let mut callbacks = Vec::new();
    if plausible(cb0) {
        callbacks.push(cb0);
    }
    if plausible(cbs) {
        // PyListObject {PyObject_VAR_HEAD, ob_item}; items are (callback, context) tuples.
        let n = mem.read_u64(cbs.wrapping_add(head)).ok()?;
        let items = mem.read_u64(cbs.wrapping_add(head + 8)).ok()?;
        if n <= MAX_CALLBACKS && plausible(items) {
            let b = mem.read_vec(items, n as usize * 8).ok()?;
            for c in b.chunks_exact(8) {
                let tuple = u64::from_le_bytes(c.try_into().ok()?);
                if let Some(cb) = objs.tuple_item(tuple, 0) {
                    callbacks.push(cb);
                }
            }
        }
    }
    for cb in callbacks {
        let name = objs.type_name(cb).unwrap_or_default();
        match name.as_str() {
            "TaskWakeupMethWrapper" | "builtin_function_or_method" => {
                let task = mem.read_u64(cb.wrapping_add(t.wakeup_task)).ok()?;
                if is_any_task(mem, objs, o, task) {
                    return Some(task);
                }
            }
            "method" => {
                // PyMethodObject {head, im_func, im_self}: a pure-Python task's wakeup,
                // or a TaskGroup's _on_task_done.
                let this = mem.read_u64(cb.wrapping_add(head + 8)).ok()?;
                if is_any_task(mem, objs, o, this) {
                    return Some(this);
                }
                if let Some(parent) = objs.instance_attr(this, "_parent_task") {
                    if is_any_task(mem, objs, o, parent) {
                        return Some(parent);
                    }
                }
            }
            "function" => {
                // gather's _done_callback, shield's _inner_done_callback: the outer
                // future is a cell of the closure.
                let closure = mem.read_u64(cb.wrapping_add(t.func_closure)).ok()?;
                for i in 0..16 {
                    let Some(cell) = objs.tuple_item(closure, i) else {
                        break;
                    };
                    let Ok(v) = mem.read_u64(cell.wrapping_add(head)) else {
                        continue;
                    };
                    if let Some(found) = via_future(mem, objs, o, t, v, depth) {
                        return Some(found);
                    }
                }
            }
            "functools.partial" => {
                // ≤3.11 wait_for's partial(_release_waiter, waiter): the task awaiting
                // the waiter future. (partialobject {head, fn, args, …})
                let args = mem.read_u64(cb.wrapping_add(head + 8)).ok()?;
                for i in 0..4 {
                    let Some(v) = objs.tuple_item(args, i) else {
                        break;
                    };
                    if let Some(found) = via_future(mem, objs, o, t, v, depth) {
                        return Some(found);
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// ≤3.13: when `v` is a plain future (not a task: gather's outer `_GatheringFuture`,
/// shield's outer future, wait_for's waiter), the task awaiting it, from its callbacks.
fn via_future(
    mem: &dyn Memory,
    objs: &Objects,
    o: &AsyncioOffsets,
    t: &TableOffsets,
    v: u64,
    depth: usize,
) -> Option<u64> {
    if !plausible(v) || is_any_task(mem, objs, o, v) {
        return None;
    }
    let name = objs.type_name(v)?;
    if !name.ends_with("Future") {
        return None;
    }
    let b = mem.read_vec(v, (t.fut_callbacks + 8) as usize).ok()?;
    let cb0 = field(&b, t.fut_callback0)?;
    let cbs = field(&b, t.fut_callbacks)?;
    awaiter_by_callbacks(mem, objs, o, t, cb0, cbs, depth + 1)
}

#[cfg(test)]
#[path = "asyncio_tests.rs"]
mod tests;
