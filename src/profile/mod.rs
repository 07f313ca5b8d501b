//! The profile: aggregated samples. Frames and threads are interned; a stack is a list
//! of frame ids (root first) with a count, so memory grows with distinct stacks, never
//! with the number of samples. This is also the lossless JSON file format.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

pub const FORMAT_NAME: &str = "pyprof-profile";
pub const FORMAT_VERSION: u32 = 1;

/// One frame: a line of a function (and, with `--opcodes`, the instruction executing).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Frame {
    /// Qualified name on 3.11+, plain name before.
    pub function: String,
    pub file: String,
    pub first_line: i32,
    /// 0 when the interpreter has no line for the instruction.
    pub line: i32,
    /// With `--opcodes`: the byte offset (as `dis` numbers it) of the instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
    /// With `--opcodes`: the opcode as executed (specialized name on 3.11+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opcode: Option<String>,
    /// With `--opcodes`: the base (deoptimized) opcode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_opcode: Option<String>,
    /// With `--native`: a native frame, of this object (`libz.so.1`); `file` and `line`
    /// are its source's where the object has DWARF line tables, else empty and 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

impl Frame {
    /// `--async-aware`: the frame that stands for asyncio task `name` (no file, no line).
    pub fn task(name: &str) -> Frame {
        Frame {
            function: format!("<task {name}>"),
            file: String::new(),
            first_line: 0,
            line: 0,
            offset: None,
            opcode: None,
            base_opcode: None,
            object: None,
        }
    }

    /// `--native`: a native frame.
    pub fn native_code(f: &crate::process::native::NativeFrame) -> Frame {
        Frame {
            function: f.function.clone(),
            file: f.file.clone().unwrap_or_default(),
            line: f.line.min(i32::MAX as u32) as i32,
            object: Some(f.object.clone()),
            ..Frame::task("")
        }
    }

    /// A frame pyprof made up (a task), not code of the target.
    /// A frame whose code object was freed before it could be read (bpf: the kernel saw
    /// it run; a module or class body that ran once, as a rule).
    pub fn freed_code() -> Frame {
        Frame {
            function: FREED_CODE.to_string(),
            ..Frame::task("")
        }
    }

    /// With `--opcodes`: the frame below a leaf instruction that stands for the native
    /// code it was executing at the sample, outside the interpreter (`object`: the file
    /// the instruction pointer was in, e.g. `libopenblas.so.0`, or `[vdso]`).
    pub fn native(object: &str) -> Frame {
        Frame {
            function: format!("<native {object}>"),
            ..Frame::task("")
        }
    }

    /// A native frame's place, as outputs show it after its name: its source file's name
    /// and line where the object has line tables (`main.c:763`; build paths are long),
    /// else the object it is in (`libz.so.1`). None for a Python frame.
    pub fn native_place(&self, with_line: bool) -> Option<String> {
        let object = self.object.as_ref()?;
        Some(
            match self.file.rsplit('/').next().filter(|n| !n.is_empty()) {
                Some(name) if self.line > 0 && with_line => format!("{name}:{}", self.line),
                Some(name) => name.to_string(),
                None => object.clone(),
            },
        )
    }

    /// The object of a [`Frame::native`] frame.
    pub fn native_object(&self) -> Option<&str> {
        if !self.file.is_empty() || self.line != 0 {
            return None;
        }
        self.function.strip_prefix("<native ")?.strip_suffix('>')
    }

    pub fn is_synthetic(&self) -> bool {
        self.file.is_empty()
            && self.line == 0
            && ((self.function.starts_with("<task ") && self.function.ends_with('>'))
                || self.function == FREED_CODE
                || self.native_object().is_some())
    }
}

/// The function name of [`Frame::freed_code`].
pub const FREED_CODE: &str = "<freed code object>";

/// A thread seen while sampling.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ThreadInfo {
    /// `threading.get_ident()` (pthread_t).
    pub thread_id: u64,
    /// OS thread id, as the kernel numbers it where pyprof runs (the host's, for a
    /// target in a container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_id: Option<u64>,
    /// The thread's id in its own PID namespace, where that differs (a container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// With `--subprocesses`: the process the thread belongs to, "process PID (command)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
}

impl ThreadInfo {
    pub fn label(&self) -> String {
        let id = match (self.native_id, self.ns_id) {
            (Some(tid), Some(ns)) if ns != tid => format!("tid {tid}, {ns} in its namespace"),
            (Some(tid), _) => format!("tid {tid}"),
            (None, _) => format!("{:#x}", self.thread_id),
        };
        match &self.name {
            Some(name) => format!("thread {name} ({id})"),
            None => format!("thread {id}"),
        }
    }
}

/// What tells threads apart (a name is learned later, so it is not part of it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ThreadKey {
    thread_id: u64,
    native_id: Option<u64>,
    process: Option<String>,
}

/// A distinct stack and how many samples had it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stack {
    /// Frame ids, root first.
    pub frames: Vec<u32>,
    /// Index into `threads`.
    pub thread: u32,
    pub count: u64,
    /// The stack was deeper than `--max-depth`: its root-most frames are missing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// With `--opcodes`, when the sampler saw where the thread was executing: the
    /// [`Frame::native`] frame (its id) of the native code the leaf instruction was in,
    /// outside the interpreter. None: in the interpreter, or not seen (see
    /// `meta.ip_seen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native: Option<u32>,
}

/// What was profiled and how.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub pyprof_version: String,
    /// What was profiled, as a user reads it: "pid 1234 (python app.py)" or the command.
    pub target: String,
    pub pid: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    pub python_version: String,
    /// The file that holds the interpreter (libpython or the executable).
    pub python_binary: String,
    /// The target's working directory (file names under it are shown relative to it).
    #[serde(default)]
    pub cwd: String,
    /// Where the layout came from (built-in table or the target's _Py_DebugOffsets).
    pub layout_source: String,
    pub rate_hz: f64,
    pub duration_secs: f64,
    /// "blocking" (target paused for each sample) or "nonblocking".
    pub mode: String,
    /// The sampler backend: "bpf", "ptrace" or "read" (empty in profiles written before
    /// there was a choice: those were "ptrace" when blocking, "read" otherwise).
    #[serde(default)]
    pub sampler: String,
    pub opcodes: bool,
    /// `--idle`: waiting threads were sampled too, so samples measure wall time (else
    /// time running or ready to run).
    #[serde(default)]
    pub idle: bool,
    /// CPU time the (first) target used while it was sampled, from its process CPU clock
    /// (the bpf sampler's samples are this times the rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cpu_secs: Option<f64>,
    /// Sampling instants of the rate (each reads every thread; with the bpf sampler and
    /// no `--idle`, where the kernel samples, the instants elapsed: rate × duration).
    pub ticks: u64,
    /// Thread stacks recorded (a tick yields one per thread).
    pub samples: u64,
    /// Thread stacks that could not be read, by reason.
    pub errors: BTreeMap<String, u64>,
    /// Ticks skipped because the sampler fell behind the requested rate.
    pub late: u64,
    /// `process_vm_readv` calls made, for cost accounting.
    #[serde(default)]
    pub memory_reads: u64,
    /// Every system call the sampler made (memory reads, /proc reads, ptrace, bpf map
    /// updates; not the sleeps between ticks), for cost accounting.
    #[serde(default)]
    pub syscalls: u64,
    /// bpf: runs of the in-kernel program for the target and the nanoseconds they took
    /// (the sampler's cost in the target's context; 0 unless the kernel keeps BPF
    /// statistics, `sysctl kernel.bpf_stats_enabled=1`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bpf_runs: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bpf_run_ns: u64,
    /// Walks tried again at once (the read sampler retries a stack that failed or whose
    /// top frame moved while it was read; ptrace one that failed, while the target is
    /// still paused), and the retries that succeeded. A walk that still fails is counted
    /// in `errors`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries_ok: u64,
    /// Read sampler: stacks read from two instants (the tick's batch and later reads) on
    /// every retry, kept as first read (counted in `samples`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub moving_kept: u64,
    /// Read sampler: stacks whose top frame, or its caller, moved during the one read
    /// they were read in, kept as read (counted in `samples`; they may mix two instants).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unsettled: u64,
    /// With `--opcodes`: samples of a leaf instruction where the sampler saw the thread's
    /// instruction pointer (bpf, and ptrace for the threads it paused), so that time in
    /// native code the instruction called is told apart (`Stack::native`); and samples
    /// where it did not (the read sampler; threads read without being paused), whose
    /// time counts as the instruction's own.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ip_seen: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ip_unseen: u64,
    /// `--native`: samples whose stack has its native frames; of them, those whose native
    /// unwinding stopped before the thread's start (an object without CFI for an address
    /// and no frame pointer, a stack deeper than its copy), and those whose eval-loop
    /// frames did not match the Python frames one for one (the Python frames left over
    /// are kept, root side).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub native_stacks: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub native_incomplete: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub native_mismatched: u64,
    pub started_at: String,
    /// Anything the user should know (layout mismatches, instrumentation seen, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Meta {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Self samples of one instruction (the leaf of a stack), with `--opcodes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstructionStat {
    pub file: String,
    pub function: String,
    pub first_line: i32,
    pub line: i32,
    pub offset: u32,
    pub opcode: String,
    pub base_opcode: String,
    pub samples: u64,
    /// Of `samples`, those executing native code the instruction called, outside the
    /// interpreter, by the file the thread was in (`Stack::native`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub native: BTreeMap<String, u64>,
}

impl InstructionStat {
    /// Samples in native code the instruction called (outside the interpreter).
    pub fn native_samples(&self) -> u64 {
        self.native.values().sum()
    }
}

/// The bytecode of a sampled function, kept so `pyprof annotate` can list every
/// instruction without the target (3.11+: quickened, as read at the end of recording).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeSnapshot {
    pub file: String,
    pub function: String,
    pub first_line: i32,
    /// Hex of the bytecode.
    pub bytecode: String,
    /// Hex of the line table (co_lnotab / co_linetable).
    pub line_table: String,
    /// `co_names`: what name arguments (`LOAD_ATTR`, `LOAD_GLOBAL`, ...) index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// `repr()` of each of `co_consts`, as read from the target (no code run in it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consts: Vec<String>,
    /// Local variable names: `co_localsplusnames` (3.11+, cells and free variables
    /// included) or `co_varnames`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locals: Vec<String>,
    /// ≤3.10: `co_cellvars` then `co_freevars` (what `LOAD_DEREF` and friends index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cells: Vec<String>,
    /// The function's source lines, `first_line` on, as read at record time through the
    /// target's own root (`/proc/PID/root`: right for a target in a chroot or container).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<String>,
    /// Why `source` is empty, when it could not be read at record time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_note: Option<String>,
}

/// One form an instruction was sampled as, and its share of the site's samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FormShare {
    pub opcode: String,
    /// "specialized", "specialized, calls C", "unspecialized", ...
    pub state: String,
    pub samples: u64,
    /// Percent of the site's samples.
    pub share: f64,
}

/// A hot instruction the specializing interpreter (3.11+) did not manage to keep in one
/// specialized form: it ran unspecialized (adaptive or generic), or it was sampled in
/// several specialized forms (polymorphic: rewritten while running).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpecializationProblem {
    pub file: String,
    pub function: String,
    pub first_line: i32,
    pub line: i32,
    pub offset: u32,
    /// The base instruction (`LOAD_ATTR`, `BINARY_OP`, ...).
    pub instruction: String,
    /// What `dis` shows as its argument (`x`, `*`, `NULL + len`), when the bytecode is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argument: Option<String>,
    /// "polymorphic" or "unspecialized".
    pub kind: String,
    pub samples: u64,
    /// Percent of all samples with an instruction.
    pub share: f64,
    /// The forms sampled at this site, most samples first.
    pub forms: Vec<FormShare>,
    /// One line: what CPython's specialization rules for this family say about what was
    /// sampled.
    pub reason: String,
}

/// The lossless profile, as written to JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileData {
    pub format: String,
    pub format_version: u32,
    pub meta: Meta,
    pub frames: Vec<Frame>,
    pub threads: Vec<ThreadInfo>,
    pub stacks: Vec<Stack>,
    /// With `--opcodes`: self samples per leaf instruction, hottest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instructions: Vec<InstructionStat>,
    /// With `--opcodes`: bytecode of the sampled functions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub code: Vec<CodeSnapshot>,
    /// With `--opcodes` on 3.11+: hot sites that ran unspecialized or polymorphic, with a
    /// reason (derived data, like `instructions`; written by the JSON output).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub specialization_problems: Vec<SpecializationProblem>,
}

impl ProfileData {
    /// Self samples per leaf instruction (from the stacks), hottest first.
    pub fn instruction_stats(&self) -> Vec<InstructionStat> {
        let mut by: HashMap<u32, (u64, BTreeMap<String, u64>)> = HashMap::new();
        for s in &self.stacks {
            if let Some(&leaf) = s.frames.last() {
                let e = by.entry(leaf).or_default();
                e.0 += s.count;
                if let Some(obj) = s
                    .native
                    .and_then(|n| self.frames.get(n as usize)?.native_object())
                {
                    *e.1.entry(obj.to_string()).or_insert(0) += s.count;
                }
            }
        }
        let mut out: Vec<InstructionStat> = by
            .into_iter()
            .filter_map(|(id, (samples, native))| {
                let f = self.frames.get(id as usize)?;
                Some(InstructionStat {
                    file: f.file.clone(),
                    function: f.function.clone(),
                    first_line: f.first_line,
                    line: f.line,
                    offset: f.offset?,
                    opcode: f.opcode.clone()?,
                    base_opcode: f.base_opcode.clone()?,
                    samples,
                    native,
                })
            })
            .collect();
        // Merge what differs only by frame id (same instruction under other callers).
        out.sort_by(|a, b| {
            (&a.file, &a.function, a.first_line, a.offset, &a.opcode).cmp(&(
                &b.file,
                &b.function,
                b.first_line,
                b.offset,
                &b.opcode,
            ))
        });
        out.dedup_by(|b, a| {
            let same = (&a.file, &a.function, a.first_line, a.offset, &a.opcode)
                == (&b.file, &b.function, b.first_line, b.offset, &b.opcode);
            if same {
                a.samples += b.samples;
                for (obj, n) in std::mem::take(&mut b.native) {
                    *a.native.entry(obj).or_insert(0) += n;
                }
            }
            same
        });
        out.sort_by(|a, b| {
            b.samples.cmp(&a.samples).then_with(|| {
                (&a.file, &a.function, a.offset).cmp(&(&b.file, &b.function, b.offset))
            })
        });
        out
    }

    /// Total samples (sum of stack counts).
    /// Does every index point at something (a profile read from a file may be damaged
    /// or hand-edited)? The first problem found, said.
    pub fn check(&self) -> Result<(), String> {
        for (i, st) in self.stacks.iter().enumerate() {
            if st.thread as usize >= self.threads.len() {
                return Err(format!(
                    "stack {i} names thread {}, and there are {} threads",
                    st.thread,
                    self.threads.len()
                ));
            }
            if let Some(&f) = st
                .frames
                .iter()
                .chain(&st.native)
                .find(|&&f| f as usize >= self.frames.len())
            {
                return Err(format!(
                    "stack {i} names frame {f}, and there are {} frames",
                    self.frames.len()
                ));
            }
        }
        Ok(())
    }

    pub fn total_samples(&self) -> u64 {
        self.stacks.iter().map(|s| s.count).sum()
    }
}

/// FxHash (rustc's): a multiply-rotate hash, several times faster than SipHash over the
/// long keys of deep stacks. Used only for keys pyprof makes itself (frame ids), never
/// for values the target controls.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FxBuild = std::hash::BuildHasherDefault<FxHasher>;

/// The aggregator used while sampling.
#[derive(Default)]
pub struct Profile {
    /// Unique per profile (caches of frame ids are only valid for one profile).
    pub id: u64,
    pub meta: Meta,
    frames: Vec<Frame>,
    frame_ids: HashMap<Frame, u32>,
    threads: Vec<ThreadInfo>,
    thread_ids: HashMap<ThreadKey, u32>,
    /// Key: thread index, truncated flag, native frame id (u32::MAX: none), then the
    /// frame ids (root first). Looking up a borrowed slice costs no allocation; only a
    /// new stack allocates its key.
    stacks: HashMap<Vec<u32>, u64, FxBuild>,
    key: Vec<u32>,
}

impl Profile {
    pub fn new(meta: Meta) -> Profile {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Profile {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            meta,
            ..Default::default()
        }
    }

    pub fn intern_frame(&mut self, f: &Frame) -> u32 {
        if let Some(&id) = self.frame_ids.get(f) {
            return id;
        }
        let id = self.frames.len() as u32;
        self.frames.push(f.clone());
        self.frame_ids.insert(f.clone(), id);
        id
    }

    /// The index of thread `t`, one per thread: threads are told apart by their ids and
    /// process, and a name learned later is given to the thread already there (a
    /// thread is one thread in every format, named as soon as its name is known).
    pub fn intern_thread(&mut self, t: &ThreadInfo) -> u32 {
        let key = ThreadKey {
            thread_id: t.thread_id,
            native_id: t.native_id,
            process: t.process.clone(),
        };
        if let Some(&id) = self.thread_ids.get(&key) {
            if t.name.is_some() {
                let known = &mut self.threads[id as usize];
                if known.name != t.name {
                    known.name = t.name.clone();
                }
            }
            return id;
        }
        let id = self.threads.len() as u32;
        self.threads.push(t.clone());
        self.thread_ids.insert(key, id);
        id
    }

    /// Count one sample of `frames` (root first) on `thread`; `native`: the
    /// [`Frame::native`] frame of the native code its leaf instruction was executing.
    pub fn add(&mut self, thread: u32, frames: &[u32], truncated: bool, native: Option<u32>) {
        self.meta.samples += 1;
        self.key.clear();
        self.key.push(thread);
        self.key.push(truncated as u32);
        self.key.push(native.unwrap_or(u32::MAX));
        self.key.extend_from_slice(frames);
        if let Some(n) = self.stacks.get_mut(self.key.as_slice()) {
            *n += 1;
        } else {
            self.stacks.insert(self.key.clone(), 1);
        }
    }

    /// Add `n` samples of one stack at once (`--async-mode all`: tasks waiting alike).
    pub fn add_n(&mut self, thread: u32, frames: &[u32], n: u64) {
        if n == 0 {
            return;
        }
        self.meta.samples += n;
        self.key.clear();
        self.key.push(thread);
        self.key.push(0);
        self.key.push(u32::MAX);
        self.key.extend_from_slice(frames);
        if let Some(c) = self.stacks.get_mut(self.key.as_slice()) {
            *c += n;
        } else {
            self.stacks.insert(self.key.clone(), n);
        }
    }

    pub fn add_error(&mut self, reason: String) {
        *self.meta.errors.entry(reason).or_insert(0) += 1;
    }

    /// The profile in its file form (stacks sorted for reproducible output).
    pub fn to_data(&self) -> ProfileData {
        let mut stacks: Vec<Stack> = self
            .stacks
            .iter()
            .map(|(key, &count)| Stack {
                frames: key[3..].to_vec(),
                thread: key[0],
                count,
                truncated: key[1] != 0,
                native: (key[2] != u32::MAX).then_some(key[2]),
            })
            .collect();
        stacks.sort_by(|a, b| {
            (a.thread, &a.frames, a.truncated, a.native).cmp(&(
                b.thread,
                &b.frames,
                b.truncated,
                b.native,
            ))
        });
        let mut data = ProfileData {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            meta: self.meta.clone(),
            frames: self.frames.clone(),
            threads: self.threads.clone(),
            stacks,
            instructions: Vec::new(),
            code: Vec::new(),
            specialization_problems: Vec::new(),
        };
        if self.meta.opcodes {
            data.instructions = data.instruction_stats();
        }
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, line: i32, opcode: &str) -> Frame {
        Frame {
            function: function.into(),
            file: "app.py".into(),
            first_line: 1,
            line,
            offset: Some(6),
            opcode: Some(opcode.into()),
            base_opcode: Some(opcode.into()),
            object: None,
        }
    }

    #[test]
    fn native_code_an_instruction_called_is_its_own_stack_and_counted_apart() {
        let mut p = Profile::new(Meta {
            opcodes: true,
            ..Default::default()
        });
        let t = p.intern_thread(&ThreadInfo {
            thread_id: 1,
            native_id: None,
            ns_id: None,
            name: None,
            process: None,
        });
        let main = p.intern_frame(&frame("main", 3, "CALL"));
        let op = p.intern_frame(&frame("matmul", 10, "BINARY_OP"));
        let blas = p.intern_frame(&Frame::native("libopenblas.so.0"));
        let libc = p.intern_frame(&Frame::native("libc.so.6"));
        for _ in 0..7 {
            p.add(t, &[main, op], false, Some(blas));
        }
        p.add(t, &[main, op], false, Some(libc));
        p.add(t, &[main, op], false, None);
        p.add(t, &[main, op], false, None);
        let d = p.to_data();
        assert_eq!(d.stacks.len(), 3, "in the interpreter, in BLAS, in libc");
        assert!(d.frames[blas as usize].is_synthetic());
        assert_eq!(
            d.frames[blas as usize].native_object(),
            Some("libopenblas.so.0")
        );
        assert_eq!(frame("x", 1, "CALL").native_object(), None);
        let s = &d.instructions[0];
        assert_eq!((s.opcode.as_str(), s.samples), ("BINARY_OP", 10));
        assert_eq!(s.native_samples(), 8);
        assert_eq!(s.native.get("libopenblas.so.0"), Some(&7));
        // Through JSON and back, and a native id that points nowhere is refused.
        let back: ProfileData = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
        assert!(back.check().is_ok());
        let mut bad = back.clone();
        bad.stacks[0].native = Some(99);
        assert!(bad.check().unwrap_err().contains("frame 99"));
    }
}
