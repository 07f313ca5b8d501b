//! OS threads of the target: their scheduler state (`/proc/PID/task/TID/stat`), and the
//! OS thread id behind a `pthread_t` on interpreters that do not record it (≤3.10).

use super::Memory;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// The state letter of a thread from its stat line: R running, S sleeping, D disk, ...
pub fn parse_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Does a state letter mean the thread is doing work (running, or in uninterruptible
/// I/O)? An unknown state counts as active, so nothing is dropped on a failed read.
pub fn is_active(state: Option<char>) -> bool {
    !matches!(state, Some('S') | Some('T') | Some('t') | Some('I'))
}

/// Reads threads' scheduler states, keeping each stat file open between samples.
#[derive(Default)]
pub struct ThreadStates {
    pid: i32,
    files: HashMap<u64, File>,
    buf: String,
}

impl ThreadStates {
    pub fn new(pid: i32) -> ThreadStates {
        ThreadStates {
            pid,
            ..Default::default()
        }
    }

    /// The state letter of thread `tid` now (None if it is gone).
    pub fn state(&mut self, tid: u64) -> Option<char> {
        if !self.files.contains_key(&tid) {
            let f = File::open(format!("/proc/{}/task/{tid}/stat", self.pid)).ok()?;
            if self.files.len() > 100_000 {
                self.files.clear();
            }
            self.files.insert(tid, f);
        }
        let f = self.files.get_mut(&tid)?;
        self.buf.clear();
        let ok = f.seek(SeekFrom::Start(0)).is_ok() && f.read_to_string(&mut self.buf).is_ok();
        if !ok || self.buf.is_empty() {
            self.files.remove(&tid);
            return None;
        }
        parse_state(&self.buf)
    }

    /// The state of every thread of the target now. Taken before pausing it: a thread
    /// paused by ptrace reads as `t` (tracing stop), not as what it was doing.
    pub fn snapshot(&mut self) -> HashMap<u64, char> {
        let tids = task_ids(self.pid);
        let out: HashMap<u64, char> = tids
            .iter()
            .filter_map(|&t| Some((t, self.state(t)?)))
            .collect();
        if self.files.len() > tids.len() + 64 {
            self.retain(&tids);
        }
        out
    }

    /// Forget threads not in `alive` (their files would keep reading a dead thread).
    pub fn retain(&mut self, alive: &[u64]) {
        self.files.retain(|t, _| alive.contains(t));
    }
}

/// The OS thread ids of the target (`/proc/PID/task`).
pub fn task_ids(pid: i32) -> Vec<u64> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Finds the OS thread id inside glibc's `struct pthread` (what a `pthread_t` points
/// at), for interpreters that record only `pthread_t` (≤3.10). The offset is learned
/// from the target itself: the first word of the struct holding one of its task ids, and
/// relearned whenever it stops giving one.
#[derive(Default)]
pub struct TidResolver {
    offset: Option<u64>,
}

/// How far into `struct pthread` the `tid` field may be.
const MAX_TID_OFFSET: u64 = 2048;

impl TidResolver {
    /// Is the offset known?
    pub fn learned(&self) -> bool {
        self.offset.is_some()
    }

    /// Learn the offset from all threads at once: the first offset at which every
    /// thread's struct holds a distinct task id of the target.
    pub fn learn(&mut self, mem: &dyn Memory, pthreads: &[u64], tasks: &HashSet<u64>) -> bool {
        let Some(&first) = pthreads.first() else {
            return false;
        };
        let mut block = vec![0u8; MAX_TID_OFFSET as usize];
        if mem.read(first, &mut block).is_err() {
            return false;
        }
        'offsets: for (i, w) in block.chunks_exact(4).enumerate() {
            let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as u64;
            if v == 0 || !tasks.contains(&v) {
                continue;
            }
            let off = 4 * i as u64;
            let mut seen = HashSet::new();
            for &p in pthreads {
                match p.checked_add(off).map(|a| mem.read_u32(a)) {
                    Some(Ok(t)) if tasks.contains(&(t as u64)) && seen.insert(t) => {}
                    _ => continue 'offsets,
                }
            }
            self.offset = Some(off);
            return true;
        }
        false
    }

    /// The OS thread id of `pthread`, given the target's current task ids (None until the
    /// offset is learned, or if the thread's struct does not hold a task id there).
    pub fn tid(&mut self, mem: &dyn Memory, pthread: u64, tasks: &HashSet<u64>) -> Option<u64> {
        let off = self.offset?;
        let v = mem.read_u32(pthread.checked_add(off)?).ok()? as u64;
        tasks.contains(&v).then_some(v)
    }
}
