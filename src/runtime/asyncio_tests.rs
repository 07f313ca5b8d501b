//! The task reader over an in-memory 3.14 image: a chain read right, and corrupt task
//! graphs (cycles, garbage pointers, a running task not on the stack) as counted errors,
//! never a panic.

use super::*;
use crate::process::memory::FakeMemory;
use crate::runtime::layouts::builtin;

const TASK_TYPE: u64 = 0x10000;
const STR_TYPE: u64 = 0x11000;
const TSTATE: u64 = 0x40000;

/// 3.14's `.AsyncioDebug` values (as tests/asyncio.rs checks them on the real one).
fn offsets() -> AsyncioOffsets {
    let v: [u64; 13] = [
        168, 136, 96, 108, 109, 128, 152, 225864, 10880, 936, 864, 872, 880,
    ];
    let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    parse_debug_offsets(&b).expect("plausible")
}

struct Image {
    mem: FakeMemory,
    l: &'static Layout,
}

impl Image {
    fn new() -> Image {
        let l = builtin(3, 14, false).expect("3.14 layout");
        let mut mem = FakeMemory::new();
        for (tp, basicsize, flags) in [
            (TASK_TYPE, 168u64, 0u64),
            (STR_TYPE, 40, l.tpflags_str_subclass),
        ] {
            let mut t = vec![0u8; 0x200];
            t[l.type_basicsize as usize..][..8].copy_from_slice(&basicsize.to_le_bytes());
            t[l.type_flags as usize..][..8].copy_from_slice(&flags.to_le_bytes());
            mem.map(tp, t);
        }
        mem.map(TSTATE, vec![0u8; 1024]);
        Image { mem, l }
    }

    /// A compact ASCII str at `at`.
    fn str_at(&mut self, at: u64, s: &str) {
        let l = self.l;
        let mut b = vec![0u8; l.unicode_ascii_size as usize + s.len() + 1];
        b[l.ob_type as usize..][..8].copy_from_slice(&STR_TYPE.to_le_bytes());
        b[l.unicode_length as usize..][..8].copy_from_slice(&(s.len() as u64).to_le_bytes());
        let state: u32 = (1 << l.unicode_kind_shift)
            | (1 << (l.unicode_kind_shift + 3))
            | (1 << (l.unicode_kind_shift + 4));
        b[l.unicode_state as usize..][..4].copy_from_slice(&state.to_le_bytes());
        b[l.unicode_ascii_size as usize..][..s.len()].copy_from_slice(s.as_bytes());
        self.mem.map(at, b);
    }

    /// A task at `at` named `name` (its str at `at + 0x1000`), coroutine `coro`, awaited
    /// by the single future `by` (0: none).
    fn task(&mut self, at: u64, name: &str, coro: u64, by: u64) {
        let o = offsets();
        let mut b = vec![0u8; o.task_size as usize];
        b[self.l.ob_type as usize..][..8].copy_from_slice(&TASK_TYPE.to_le_bytes());
        b[o.task_is_task as usize] = 1;
        b[o.task_name as usize..][..8].copy_from_slice(&(at + 0x1000).to_le_bytes());
        b[o.task_coro as usize..][..8].copy_from_slice(&coro.to_le_bytes());
        b[o.task_awaited_by as usize..][..8].copy_from_slice(&by.to_le_bytes());
        self.mem.map(at, b);
        self.str_at(at + 0x1000, name);
    }

    fn running(&mut self, task: u64) {
        let at = TSTATE + offsets().tstate_running_task;
        assert!(self.mem.patch(at, &task.to_le_bytes()));
    }

    /// The reader's answer for a stack whose outermost frame is coroutine `coro`'s.
    fn read(&self, coro: u64) -> Result<Option<(TaskChain, usize)>, AsyncError> {
        let raw = RawThread {
            tstate: TSTATE,
            frames: vec![
                RawFrame {
                    frame: 0x90000,
                    code: 0,
                    instr: 0,
                    owner: 0,
                    tlbc_index: 0,
                    bytecode: 0,
                    entry: false,
                },
                RawFrame {
                    frame: coro + 72,
                    code: 0,
                    instr: 0,
                    owner: 1,
                    tlbc_index: 0,
                    bytecode: 0,
                    entry: false,
                },
            ],
            ..Default::default()
        };
        let is_frame_of = |f: &RawFrame, c: u64| f.frame == c + 72;
        AsyncioReader::with_offsets(offsets()).running(&self.mem, self.l, &raw, &is_frame_of)
    }
}

#[test]
fn chain_outermost_first_and_task_frame_index() {
    let mut img = Image::new();
    img.task(0x20000, "alpha", 0x50000, 0x22000);
    img.task(0x22000, "gamma", 0x52000, 0x24000);
    img.task(0x24000, "main", 0x54000, 0);
    img.running(0x20000);
    let (chain, at) = img.read(0x50000).unwrap().expect("a task");
    assert_eq!(chain.names, ["main", "gamma", "alpha"]);
    assert_eq!((chain.coro, at), (0x50000, 1));
}

#[test]
fn no_running_task_is_no_chain() {
    let img = Image::new();
    assert_eq!(img.read(0x50000), Ok(None));
}

#[test]
fn corrupt_task_graphs_are_errors_not_panics() {
    // A cycle: alpha awaited by gamma awaited by alpha.
    let mut img = Image::new();
    img.task(0x20000, "alpha", 0x50000, 0x22000);
    img.task(0x22000, "gamma", 0x52000, 0x20000);
    img.running(0x20000);
    assert_eq!(img.read(0x50000), Err("await chain loops"));
    // The running task is not a task (garbage pointer, unmapped memory).
    for garbage in [0x12345678, 0xdead_0000, 0x11000] {
        let mut img = Image::new();
        img.running(garbage);
        assert_eq!(img.read(0x50000), Err("not a Task object"), "{garbage:#x}");
    }
    // A running task whose coroutine is not on the stack (and no other task known).
    let mut img = Image::new();
    img.task(0x20000, "alpha", 0x50000, 0);
    img.running(0x20000);
    assert!(img.read(0x60000).unwrap_err().contains("not on the stack"));
    // An awaiter that is not a task ends the chain; a name that is not a str is an error.
    let mut img = Image::new();
    img.task(0x20000, "alpha", 0x50000, 0x7777_0000);
    img.running(0x20000);
    assert_eq!(img.read(0x50000).unwrap().unwrap().0.names, ["alpha"]);
    let mut img = Image::new();
    img.task(0x20000, "alpha", 0x50000, 0);
    assert!(img
        .mem
        .patch(0x21000 + img.l.ob_type as u64, &TASK_TYPE.to_le_bytes()));
    img.running(0x20000);
    assert_eq!(img.read(0x50000), Err("task name unreadable"));
}

#[test]
fn debug_offsets_that_cannot_be_right_are_refused() {
    let mut v: [u64; 13] = [
        168, 136, 96, 108, 109, 128, 152, 225864, 10880, 936, 864, 872, 880,
    ];
    let bytes = |v: &[u64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    assert!(parse_debug_offsets(&bytes(&v)).is_some());
    assert!(parse_debug_offsets(&bytes(&v)[..100]).is_none());
    v[1] = 4000; // task_name beyond the task
    assert!(parse_debug_offsets(&bytes(&v)).is_none());
    v[1] = 136;
    v[11] = 1 << 30; // running task beyond the thread state
    assert!(parse_debug_offsets(&bytes(&v)).is_none());
}
