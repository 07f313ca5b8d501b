//! The walker and the code reader against fake process images of every built-in layout:
//! clean images give exactly the stacks that were built; corrupted ones give a specific
//! `WalkError` (or a clean sample), never a panic, an unbounded loop or an unbounded
//! allocation; and the number of memory reads a sample costs is pinned by a formula.
//!
//! Run: `cargo test --test walker_faults` (add `-- --nocapture` for the read-count table,
//! `-- --ignored` for the tests that demonstrate known bugs).
//! `WALKER_FUZZ_CASES=20000` runs a longer property test; `WALKER_FUZZ_SEED=<n>` replays one.

#[path = "support/fake_image.rs"]
mod fake_image;

use fake_image::*;
use pyprof::code::opcodes::{self, OpcodeTable};
use pyprof::code::resolve::resolve_frame;
use pyprof::code::{CodeInfo, CodeReader, MAX_STRING, MAX_TABLE};
use pyprof::process::{Memory, MemoryError};
use pyprof::profile::Frame;
use pyprof::profile::{Meta, Profile};
use pyprof::runtime::layout::{FrameKind, Layout, StringKind};
use pyprof::runtime::layouts;
use pyprof::sampler::{StackSampler, DEFAULT_MAX_DEPTH};
use pyprof::walker::{RawFrame, RawThread, WalkError, Walker, MAX_INTERPRETERS, MAX_THREADS};
use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// The pipeline under test: the real `StackSampler` (batched walk of every thread, code
// cache, batched opcode reads, frame-id cache, reuse of each stack's root side), as
// `Session::sample` runs it (Session needs a live process).

fn new_reader(l: &Layout, table: Option<&'static OpcodeTable>) -> CodeReader {
    CodeReader::new(l, table)
}

#[allow(dead_code)]
fn resolve(
    l: &Layout,
    info: &CodeInfo,
    rf: &RawFrame,
    table: Option<&OpcodeTable>,
    mem: &dyn Memory,
) -> Result<Option<Frame>, WalkError> {
    resolve_frame(l, info, rf, table, mem)
}

#[derive(Clone, Debug, PartialEq)]
struct Sampled {
    tstate: u64,
    thread_id: u64,
    native_id: Option<u64>,
    frames: Vec<Frame>,
    raw_frames: usize,
    truncated: bool,
}

/// A `StackSampler` and the profile it records into, kept across passes so that its
/// caches are what a long recording has.
struct Pipeline {
    sampler: StackSampler,
    profile: Profile,
}

impl Pipeline {
    fn new(w: Walker, table: Option<&'static OpcodeTable>) -> Pipeline {
        Pipeline {
            sampler: StackSampler::new(w, table),
            profile: Profile::new(Meta::default()),
        }
    }

    /// One sample of every thread: the interpreter and thread list errors fail the
    /// sample, per-thread errors fail that thread only. The stacks this pass added to
    /// the profile, per thread state, in list order.
    fn pass(&mut self, mem: &dyn Memory) -> Result<Vec<Result<Sampled, WalkError>>, WalkError> {
        let before = self.profile.to_data();
        let mut seen: Vec<(u64, u64, Option<u64>, usize, bool)> = Vec::new();
        let failed = self
            .sampler
            .sample_with(mem, &mut self.profile, None, &mut |raw, _| {
                seen.push((
                    raw.tstate,
                    raw.thread_id,
                    raw.native_id,
                    raw.frames.len(),
                    raw.truncated,
                ));
                true
            });
        if let Some(f) = failed.iter().find(|f| f.tstate.is_none()) {
            return Err(f.error.clone());
        }
        let after = self.profile.to_data();
        // Stacks whose count grew in this pass, by thread ids.
        let count_before = |thread: &pyprof::profile::ThreadInfo, frames: &[Frame], truncated| {
            before
                .stacks
                .iter()
                .filter(|st| {
                    st.truncated == truncated
                        && before.threads[st.thread as usize] == *thread
                        && st.frames.len() == frames.len()
                        && st
                            .frames
                            .iter()
                            .zip(frames)
                            .all(|(&i, f)| before.frames[i as usize] == *f)
                })
                .map(|st| st.count)
                .sum::<u64>()
        };
        let mut added: Vec<(u64, Option<u64>, Vec<Frame>)> = Vec::new();
        for st in &after.stacks {
            let thread = &after.threads[st.thread as usize];
            let frames: Vec<Frame> = st
                .frames
                .iter()
                .map(|&i| after.frames[i as usize].clone())
                .collect();
            let grew = st.count - count_before(thread, &frames, st.truncated);
            for _ in 0..grew {
                let mut leaf_first = frames.clone();
                leaf_first.reverse();
                added.push((thread.thread_id, thread.native_id, leaf_first));
            }
        }
        let mut out = Vec::new();
        for tstate in self.sampler.last_tstates().to_vec() {
            if let Some(f) = failed.iter().find(|f| f.tstate == Some(tstate)) {
                out.push(Err(f.error.clone()));
                continue;
            }
            let Some(&(_, thread_id, native_id, raw_frames, truncated)) =
                seen.iter().find(|s| s.0 == tstate)
            else {
                continue;
            };
            let frames = match added
                .iter()
                .position(|a| a.0 == thread_id && a.1 == native_id)
            {
                Some(i) => added.remove(i).2,
                None => Vec::new(), // nothing recorded: a stack of no Python frames
            };
            out.push(Ok(Sampled {
                tstate,
                thread_id,
                native_id,
                frames,
                raw_frames,
                truncated,
            }));
        }
        Ok(out)
    }
}

/// One sample through a fresh `StackSampler` that uses (and keeps) `r`'s code cache.
fn sample_pass(
    mem: &dyn Memory,
    w: &Walker,
    r: &mut CodeReader,
) -> Result<Vec<Result<Sampled, WalkError>>, WalkError> {
    let mut pipe = Pipeline::new(w.clone(), r.opcode_table());
    std::mem::swap(&mut pipe.sampler.code, r);
    let result = pipe.pass(mem);
    std::mem::swap(&mut pipe.sampler.code, r);
    result
}

/// The first error of a sample, if any.
fn first_error(s: &Result<Vec<Result<Sampled, WalkError>>, WalkError>) -> Option<WalkError> {
    match s {
        Err(e) => Some(e.clone()),
        Ok(v) => v.iter().find_map(|t| t.as_ref().err().cloned()),
    }
}

/// Sample the image once with a fresh reader; the first error, if any.
fn sample_error(img: &FakeImage, max_depth: usize) -> Option<WalkError> {
    let w = img.walker(max_depth);
    let mut r = new_reader(&img.layout, None);
    first_error(&sample_pass(&img.mem, &w, &mut r))
}

fn ok_threads(s: Result<Vec<Result<Sampled, WalkError>>, WalkError>) -> Vec<Sampled> {
    s.expect("sample")
        .into_iter()
        .map(|t| t.expect("thread"))
        .collect()
}

/// Every built-in layout: 2.7, 3.6–3.13 at the time of writing, newer and free-threaded
/// ones as they are added.
fn all_layouts() -> Vec<&'static Layout> {
    let mut v: Vec<&'static Layout> = Vec::new();
    for (major, minor) in std::iter::once((2u8, 7u8)).chain((0..=40).map(|m| (3u8, m))) {
        for ft in [false, true] {
            if let Some(l) = layouts::builtin(major, minor, ft) {
                if l.free_threaded == ft && !v.iter().any(|x| std::ptr::eq(*x, l)) {
                    v.push(l);
                }
            }
        }
    }
    assert!(
        v.len() >= 9,
        "expected at least 2.7 and 3.6–3.13, got {}",
        v.len()
    );
    v
}

fn ver(l: &Layout) -> String {
    format!(
        "{}.{}{}",
        l.major,
        l.minor,
        if l.free_threaded { "t" } else { "" }
    )
}

fn has_shims(l: &Layout) -> bool {
    l.owner_cstack.is_some()
}

fn assert_frames_match(label: &str, got: &[Frame], want: &[ExpectedFrame]) {
    assert_eq!(
        got.len(),
        want.len(),
        "{label}: depth\n got {got:#?}\nwant {want:#?}"
    );
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            (&g.function, &g.file, g.first_line, g.line),
            (&w.function, &w.file, w.first_line, w.line),
            "{label}: frame {i} (leaf = 0)"
        );
    }
}

/// A clean image: four code objects, three threads of depths 7, 3, 1; 3.12+ adds C-stack
/// entry frames at the root of the first thread and between two of its frames.
fn standard_image(l: &Layout, subinterpreters: usize) -> FakeImage {
    let mut b = ImageBuilder::new(l);
    let main = b.code("<module>", "/srv/app/main.py", 1);
    let handle = b.code("handle", "/srv/app/server.py", 120);
    let parse = b.code("parse", "/usr/lib/python3/json/decoder.py", 333);
    let leaf = b.code("leaf_with_a_rather_long_name", "/srv/app/util.py", 7);
    let py = |code, slot| FrameSpec::Py { code, slot };
    let mut t0 = vec![
        py(leaf, 0),
        py(parse, 3),
        py(parse, 1),
        py(handle, 2),
        py(handle, 0),
        py(handle, 5),
        py(main, 9),
    ];
    if has_shims(l) {
        t0.insert(3, FrameSpec::Shim);
        t0.push(FrameSpec::Shim);
    }
    b.thread_frames(t0);
    b.thread(&[(parse, 2), (handle, 1), (main, 4)]);
    b.thread(&[(leaf, 3)]);
    b.subinterpreters(subinterpreters);
    b.build()
}

// ---------------------------------------------------------------------------------------
// Counting and bounding

/// A `Memory` that counts reads as `LiveMemory` does (one per non-empty read) and records
/// the largest single read.
struct CountingMemory<'a> {
    inner: &'a dyn Memory,
    reads: Cell<u64>,
    bytes: Cell<u64>,
    largest: Cell<usize>,
}

impl<'a> CountingMemory<'a> {
    fn new(inner: &'a dyn Memory) -> Self {
        CountingMemory {
            inner,
            reads: Cell::new(0),
            bytes: Cell::new(0),
            largest: Cell::new(0),
        }
    }
    fn reset(&self) {
        self.reads.set(0);
        self.bytes.set(0);
        self.largest.set(0);
    }
}

impl Memory for CountingMemory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if !buf.is_empty() {
            self.reads.set(self.reads.get() + 1);
            self.bytes.set(self.bytes.get() + buf.len() as u64);
            self.largest.set(self.largest.get().max(buf.len()));
        }
        self.inner.read(addr, buf)
    }

    /// One batched read costs one system call in `LiveMemory` (up to IOV_MAX ranges).
    fn read_scatter(&self, reqs: &[(u64, usize)], out: &mut [u8]) -> Vec<bool> {
        if !reqs.is_empty() {
            self.reads
                .set(self.reads.get() + reqs.len().div_ceil(1024) as u64);
        }
        self.inner.read_scatter(reqs, out)
    }
}

/// The global allocator, recording the largest single allocation made by this thread
/// while tracking is on (other tests' threads are not affected).
struct TrackingAlloc;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST_ALLOC: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = LARGEST_ALLOC.try_with(|m| m.set(m.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for TrackingAlloc {
    unsafe fn alloc(&self, l: AllocLayout) -> *mut u8 {
        note_alloc(l.size());
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: AllocLayout) -> *mut u8 {
        note_alloc(l.size());
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: AllocLayout, new_size: usize) -> *mut u8 {
        note_alloc(new_size);
        System.realloc(p, l, new_size)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: AllocLayout) {
        System.dealloc(p, l)
    }
}

#[global_allocator]
static ALLOC: TrackingAlloc = TrackingAlloc;

/// Run `f` recording the largest single allocation it makes.
fn largest_alloc_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST_ALLOC.with(|m| m.set(0));
    TRACKING.with(|t| t.set(true));
    let r = f();
    TRACKING.with(|t| t.set(false));
    (r, LARGEST_ALLOC.with(|m| m.get()))
}

// ---------------------------------------------------------------------------------------
// Clean images

#[test]
fn clean_image_gives_the_built_stacks_for_every_layout() {
    for l in all_layouts() {
        for subs in [0, 2] {
            let img = standard_image(l, subs);
            let label = format!("{} ({subs} sub-interpreters)", ver(l));
            let w = img.walker(DEFAULT_MAX_DEPTH);
            assert_eq!(
                w.main_interpreter(&img.mem),
                Ok(img.main_interp()),
                "{label}"
            );
            let mut r = new_reader(l, None);
            for pass in ["cold", "warm"] {
                let threads = ok_threads(sample_pass(&img.mem, &w, &mut r));
                assert_eq!(threads.len(), img.threads.len(), "{label} {pass}");
                for (got, want) in threads.iter().zip(&img.threads) {
                    let label = format!("{label} {pass} thread {:#x}", want.thread_id);
                    assert_eq!(got.tstate, want.tstate, "{label}");
                    assert_eq!(got.thread_id, want.thread_id, "{label}");
                    let native = l.tstate_native_thread_id.map(|_| want.native_id);
                    assert_eq!(got.native_id, native, "{label}");
                    assert!(!got.truncated, "{label}");
                    // Shims are dropped by the walker itself.
                    assert_eq!(got.raw_frames, want.expected.len(), "{label}");
                    assert_frames_match(&label, &got.frames, &want.expected);
                }
            }
            assert_eq!(
                r.misses,
                img.codes.len() as u64,
                "{label}: one decode per code object"
            );
            assert_eq!(r.cached(), img.codes.len(), "{label}");
        }
    }
}

/// The target's memory, except that late reads (`Memory::read_late`, made once a
/// thread's frames are read: its top-frame pointer, its top frame's code object, its
/// caller's instruction) see another value: all of them (`flip` None), or only the
/// `flip`-th of every three (a one-thread image). A thread that moved on while it was
/// read: the pointer moved; the same frame slot holds another function's frame; the
/// caller went on to another instruction. With `fail`, late reads fail instead (a
/// snapshot that missed, `strict`: the walk mixed two instants).
struct MovingMemory<'a> {
    inner: &'a dyn Memory,
    flip: Option<usize>,
    fail: bool,
    late: Cell<usize>,
}

impl<'a> MovingMemory<'a> {
    fn new(inner: &'a dyn Memory, flip: Option<usize>, fail: bool) -> Self {
        MovingMemory {
            inner,
            flip,
            fail,
            late: Cell::new(0),
        }
    }
}

impl Memory for MovingMemory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.inner.read(addr, buf)
    }
    fn read_late(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if self.fail {
            return Err(MemoryError {
                addr,
                len: buf.len(),
            });
        }
        self.inner.read(addr, buf)?;
        let n = self.late.get();
        self.late.set(n + 1);
        if self.flip.is_none_or(|f| n % 3 == f) {
            buf[0] ^= 0x40;
        }
        Ok(())
    }
}

/// Root-first (function, line) sequences of every stack recorded with frames, sorted.
fn recorded_stacks(profile: &Profile) -> Vec<Vec<(String, i32)>> {
    let data = profile.to_data();
    let mut v: Vec<Vec<(String, i32)>> = data
        .stacks
        .iter()
        .map(|s| {
            s.frames
                .iter()
                .rev()
                .map(|&i| {
                    let f = &data.frames[i as usize];
                    (f.function.clone(), f.line)
                })
                .collect()
        })
        .filter(|s: &Vec<(String, i32)>| !s.is_empty())
        .collect();
    v.sort();
    v
}

/// Sample `img` through `mem` with mixed stacks set aside, then record what was set
/// aside: (walks reported moved, stacks flagged unsettled, stacks recorded).
fn sample_moving(
    img: &FakeImage,
    w: Walker,
    mem: &dyn Memory,
) -> (usize, u64, Vec<Vec<(String, i32)>>) {
    let label = ver(&img.layout);
    let mut sampler = StackSampler::new(w, None);
    sampler.defer_moved = true;
    let mut profile = Profile::new(Meta::default());
    let failed = sampler.sample_with(mem, &mut profile, None, &mut |_, _| true);
    assert!(
        failed
            .iter()
            .all(|f| f.error == WalkError::Moved && f.tstate.is_some()),
        "{label}: {:?}",
        failed.iter().map(|f| &f.error).collect::<Vec<_>>()
    );
    for f in &failed {
        let ts = f.tstate.unwrap_or(0);
        assert_eq!(
            sampler.record_moved(&img.mem, ts, &mut profile),
            Ok(true),
            "{label}"
        );
        assert_eq!(
            sampler.record_moved(&img.mem, ts, &mut profile),
            Ok(false),
            "{label}: once"
        );
    }
    (failed.len(), sampler.unsettled, recorded_stacks(&profile))
}

fn expected_stacks(img: &FakeImage) -> Vec<Vec<(String, i32)>> {
    let mut want: Vec<Vec<(String, i32)>> = img
        .threads
        .iter()
        .filter(|t| !t.expected.is_empty())
        .map(|t| {
            t.expected
                .iter()
                .map(|f| (f.function.clone(), f.line))
                .collect()
        })
        .collect();
    want.sort();
    want
}

/// A thread whose top frame moved while its frames were read is recorded as read and
/// counted unsettled: on every layout, each of the three late reads alone flags it. A
/// walk that mixed two instants (a late read that cannot be served from the batch) is
/// set aside instead, not recorded, and reported `Moved` (the read sampler reads it
/// again); if no read settles, the stack set aside is recorded. Without the check
/// (ptrace: the target is paused) nothing is read late.
#[test]
fn stacks_that_moved_while_they_were_read_are_flagged_or_read_again() {
    for l in all_layouts() {
        let img = standard_image(l, 0);
        let want = expected_stacks(&img);
        let w = || img.walker(DEFAULT_MAX_DEPTH);
        let (moved, unsettled, got) =
            sample_moving(&img, w(), &MovingMemory::new(&img.mem, None, false));
        assert_eq!(
            (moved, unsettled),
            (0, want.len() as u64),
            "{}: every stack with frames",
            ver(l)
        );
        assert_eq!(got, want, "{}", ver(l));
        let (moved, unsettled, got) =
            sample_moving(&img, w(), &MovingMemory::new(&img.mem, None, true));
        assert_eq!((moved, unsettled), (want.len(), 0), "{}: mixed", ver(l));
        assert_eq!(got, want, "{}", ver(l));
        // One thread of three Python frames: each late read in turn.
        let mut b = ImageBuilder::new(l);
        let codes: Vec<usize> = (0..3)
            .map(|i| b.code(&format!("f{i}"), "/srv/m.py", 10 * i + 1))
            .collect();
        b.thread(&[(codes[0], 2), (codes[1], 1), (codes[2], 3)]);
        let one = b.build();
        for flip in 0..3 {
            let m = MovingMemory::new(&one.mem, Some(flip), false);
            let (moved, unsettled, got) = sample_moving(&one, one.walker(DEFAULT_MAX_DEPTH), &m);
            assert_eq!(
                (moved, unsettled),
                (0, 1),
                "{}: late read {flip} alone",
                ver(l)
            );
            assert_eq!(
                m.late.get(),
                flip + 1,
                "{}: stops at the first change",
                ver(l)
            );
            assert_eq!(got, expected_stacks(&one), "{}", ver(l));
        }
        let m = MovingMemory::new(&one.mem, Some(3), false);
        let (moved, unsettled, _) = sample_moving(&one, one.walker(DEFAULT_MAX_DEPTH), &m);
        assert_eq!(
            (moved, unsettled, m.late.get()),
            (0, 0, 3),
            "{}: settled",
            ver(l)
        );
        let mut unchecked = w();
        unchecked.check_moved = false;
        let m = MovingMemory::new(&img.mem, None, true);
        let (moved, unsettled, got) = sample_moving(&img, unchecked, &m);
        assert_eq!((moved, unsettled), (0, 0), "{}: unchecked", ver(l));
        assert_eq!(got, want, "{}", ver(l));
    }
}

/// A code object freed and another allocated at its address between two samples, the
/// frames (addresses, instructions) unchanged: the second sample names the new code
/// object. The sampler reuses the ids of the frames a stack shares with the thread's
/// previous one, but only after validating their code objects again.
#[test]
fn a_code_object_replaced_at_the_same_address_is_named_anew() {
    for l in all_layouts() {
        let mut b = ImageBuilder::new(l);
        let main = b.code("<module>", "/srv/app/main.py", 1);
        let first = b.code("first", "/srv/app/a.py", 10);
        let second = b.code("second", "/srv/app/b.py", 20);
        let py = |code, slot| FrameSpec::Py { code, slot };
        b.thread_frames(vec![py(first, 1), py(first, 0), py(main, 0)]);
        let mut img = b.build();
        let w = img.walker(DEFAULT_MAX_DEPTH);
        let mut pipe = Pipeline::new(w, None);
        let names = |t: &Sampled| -> Vec<(String, String)> {
            // (3.11+ record qualified names: the builder's are `Mod.NAME`.)
            let plain = |f: &Frame| f.function.trim_start_matches("Mod.").to_string();
            t.frames
                .iter()
                .map(|f| (plain(f), f.file.clone()))
                .collect()
        };
        let label = ver(l);
        let t = ok_threads(pipe.pass(&img.mem));
        let a = ("first".to_string(), "/srv/app/a.py".to_string());
        let m = ("<module>".to_string(), "/srv/app/main.py".to_string());
        assert_eq!(names(&t[0]), [a.clone(), a, m.clone()], "{label}");
        // `first` is gone; `second`'s header now sits at its address.
        let (from, to) = (img.codes[first].addr, img.codes[second].addr);
        // (The whole object: its header, and on 3.11+ the bytecode inline after it.)
        let c = &img.codes[second];
        let fields = [
            l.code_filename,
            l.code_name,
            l.code_firstlineno,
            l.code_linetable,
        ];
        let header_end = fields.into_iter().chain(l.code_qualname).max().unwrap() as u64 + 8;
        let inline = c.code_start > to && c.code_start - to < 4096;
        let size = if inline {
            c.code_start + c.code_len - to
        } else {
            header_end
        };
        let mut header = vec![0u8; size as usize];
        for (i, byte) in header.iter_mut().enumerate() {
            *byte = img.mem.read_u8(to + i as u64).expect("code header");
        }
        img.write(from, &header);
        let t = ok_threads(pipe.pass(&img.mem));
        let b = ("second".to_string(), "/srv/app/b.py".to_string());
        assert_eq!(names(&t[0]), [b.clone(), b, m], "{label}");
    }
}

#[test]
fn clean_image_with_opcode_capture_reports_the_instruction() {
    for l in all_layouts() {
        let Some(table) = opcodes::table_for(l.major, l.minor, l.free_threaded) else {
            continue;
        };
        let img = standard_image(l, 0);
        let w = img.walker(DEFAULT_MAX_DEPTH);
        let mut r = new_reader(l, Some(table));
        let threads = ok_threads(sample_pass(&img.mem, &w, &mut r));
        for (got, want) in threads.iter().zip(&img.threads) {
            let label = format!("{} thread {:#x}", ver(l), want.thread_id);
            assert_frames_match(&label, &got.frames, &want.expected);
            for (g, e) in got.frames.iter().zip(&want.expected) {
                assert_eq!(g.offset, Some(e.offset), "{label}");
                assert_eq!(g.opcode.as_deref(), Some("NOP"), "{label}");
            }
        }
    }
}

/// Layouts whose instrumented bytecode can be resolved through `_co_monitoring`.
fn monitoring_layouts() -> Vec<(&'static Layout, &'static OpcodeTable)> {
    all_layouts()
        .into_iter()
        .filter(|l| l.code_monitoring.is_some())
        .filter_map(|l| Some((l, opcodes::table_for(l.major, l.minor, l.free_threaded)?)))
        .collect()
}

#[test]
fn instrumented_bytecode_reports_the_replaced_instruction() {
    for (l, table) in monitoring_layouts() {
        let mut img = standard_image(l, 0);
        let nop = table.opcode("NOP").unwrap();
        img.instrument_lines(1, nop);
        let w = img.walker(DEFAULT_MAX_DEPTH);
        let mut r = new_reader(l, Some(table));
        let threads = ok_threads(sample_pass(&img.mem, &w, &mut r));
        let handle = img.codes[1].spec.qualname.clone();
        let mut seen = 0;
        for (got, want) in threads.iter().zip(&img.threads) {
            assert_frames_match(&ver(l), &got.frames, &want.expected);
            for (g, e) in got.frames.iter().zip(&want.expected) {
                assert_eq!(g.offset, Some(e.offset), "{}", ver(l));
                let op = if g.function == handle {
                    "INSTRUMENTED_LINE"
                } else {
                    "NOP"
                };
                seen += (g.function == handle) as usize;
                assert_eq!(g.opcode.as_deref(), Some(op), "{}", ver(l));
                assert_eq!(g.base_opcode.as_deref(), Some("NOP"), "{}", ver(l));
            }
        }
        assert!(seen > 0);
    }
}

#[test]
fn bug_monitoring_pointers_near_top_of_address_space() {
    let mut panics = Vec::new();
    for (l, table) in monitoring_layouts() {
        for which in ["co_monitoring", "monitoring.lines"] {
            for v in HIGH {
                let mut img = standard_image(l, 0);
                let (mon, _) = img.instrument_lines(1, table.opcode("NOP").unwrap());
                let at = match which {
                    "co_monitoring" => img.codes[1].addr + l.code_monitoring.unwrap() as u64,
                    _ => mon + l.monitoring_lines.unwrap() as u64,
                };
                img.write_u64(at, v);
                let r = catch_unwind(AssertUnwindSafe(|| {
                    let mut r = new_reader(l, Some(table));
                    sample_pass(&img.mem, &img.walker(100), &mut r).map(|_| ())
                }));
                if let Err(p) = r {
                    panics.push(format!("{} {which}={v:#x}: {}", ver(l), panic_message(p)));
                }
            }
        }
    }
    assert!(panics.is_empty(), "{}", panics.join("\n"));
}

#[test]
fn uninitialised_and_idle_runtimes_are_empty_samples() {
    for l in all_layouts() {
        // No interpreter yet.
        let mut img = standard_image(l, 0);
        img.write_u64(img.interp_head_addr, 0);
        let w = img.walker(DEFAULT_MAX_DEPTH);
        assert_eq!(w.main_interpreter(&img.mem), Ok(0), "{}", ver(l));
        // An interpreter without threads.
        let mut img = standard_image(l, 0);
        let head = img.interp_tstate_head_addr(img.main_interp());
        img.write_u64(head, 0);
        let mut r = new_reader(l, None);
        assert_eq!(
            ok_threads(sample_pass(&img.mem, &img.walker(100), &mut r)),
            vec![]
        );
        // A thread that runs no Python code.
        let mut img = standard_image(l, 0);
        let slot = img.top_frame_slot(1);
        img.write_u64(slot, 0);
        let threads = ok_threads(sample_pass(&img.mem, &img.walker(100), &mut r));
        assert!(
            threads[1].frames.is_empty() && !threads[1].truncated,
            "{}",
            ver(l)
        );
        assert_eq!(threads[0].frames.len(), img.threads[0].expected.len());
    }
}

#[test]
fn frames_not_started_or_being_set_up() {
    for l in all_layouts() {
        let mut img = standard_image(l, 0);
        let f = img.threads[0].py_frames()[1];
        match l.frame_kind {
            // f_lasti = -1: not started; reported on its first line.
            FrameKind::Object => img.write_u32(img.frame_instr_addr(f), u32::MAX),
            // An instruction pointer before the code: `_PyFrame_IsIncomplete`, skipped.
            FrameKind::Interpreter => {
                let start = img.codes[2].code_start;
                img.write_u64(img.frame_instr_addr(f), start - 2)
            }
        }
        let mut r = new_reader(l, None);
        let threads = ok_threads(sample_pass(&img.mem, &img.walker(100), &mut r));
        let mut want = img.threads[0].expected.clone();
        match l.frame_kind {
            FrameKind::Object => want[1].line = want[1].first_line,
            FrameKind::Interpreter => {
                want.remove(1);
            }
        }
        assert_frames_match(&ver(l), &threads[0].frames, &want);
    }
}

#[test]
fn a_five_thousand_frame_stack_is_walked_whole_with_the_default_depth() {
    for l in all_layouts() {
        let mut b = ImageBuilder::new(l);
        let rec = b.code("recurse", "/srv/deep.py", 10);
        let base = b.code("<module>", "/srv/deep.py", 1);
        let mut frames: Vec<(usize, u32)> = (0..4999).map(|i| (rec, (i % 3) as u32)).collect();
        frames.push((base, 0));
        b.thread(&frames);
        let img = b.build();
        let mut r = new_reader(l, None);
        let t = &ok_threads(sample_pass(
            &img.mem,
            &img.walker(DEFAULT_MAX_DEPTH),
            &mut r,
        ))[0];
        assert!(!t.truncated, "{}", ver(l));
        assert_eq!(t.frames.len(), 5000, "{}", ver(l));
        assert_frames_match(&ver(l), &t.frames, &img.threads[0].expected);
        assert_eq!(r.misses, 2);
    }
}

#[test]
fn deeper_than_max_depth_is_truncated_to_exactly_max_depth_leaf_frames() {
    for l in all_layouts() {
        let mut b = ImageBuilder::new(l);
        let c = b.code("f", "/srv/f.py", 1);
        let frames: Vec<(usize, u32)> = (0..50).map(|i| (c, i % 5)).collect();
        b.thread(&frames);
        b.thread(&frames[..20]);
        let img = b.build();
        let mut r = new_reader(l, None);
        let threads = ok_threads(sample_pass(&img.mem, &img.walker(20), &mut r));
        assert!(threads[0].truncated, "{}", ver(l));
        assert_eq!(threads[0].raw_frames, 20, "{}", ver(l));
        assert_frames_match(&ver(l), &threads[0].frames, &img.threads[0].expected[..20]);
        // Exactly max_depth frames is not truncated.
        assert!(!threads[1].truncated, "{}", ver(l));
        assert_eq!(threads[1].frames.len(), 20, "{}", ver(l));
        // max_depth 0 is taken as 1.
        let t = &ok_threads(sample_pass(&img.mem, &img.walker(0), &mut r))[0];
        assert!(t.truncated && t.frames.len() == 1, "{}", ver(l));
    }
}

#[test]
fn c_stack_entry_frames_are_skipped_and_count_toward_the_depth() {
    for l in all_layouts().into_iter().filter(|l| has_shims(l)) {
        let mut b = ImageBuilder::new(l);
        let c = b.code("f", "/srv/f.py", 1);
        let py = |slot| FrameSpec::Py { code: c, slot };
        b.thread_frames(vec![
            py(0),
            FrameSpec::Shim,
            py(1),
            FrameSpec::Shim,
            py(2),
            FrameSpec::Shim,
        ]);
        let img = b.build();
        let mut r = new_reader(l, None);
        let t = &ok_threads(sample_pass(&img.mem, &img.walker(100), &mut r))[0];
        assert_frames_match(&ver(l), &t.frames, &img.threads[0].expected);
        // The depth counts Python frames (what a user sees), not the shims between them.
        let t = &ok_threads(sample_pass(&img.mem, &img.walker(2), &mut r))[0];
        assert!(t.truncated, "{}", ver(l));
        assert_frames_match(&ver(l), &t.frames, &img.threads[0].expected[..2]);
    }
}

// ---------------------------------------------------------------------------------------
// Fault injection: each fault has one specific outcome.

#[test]
fn frame_pointing_back_at_itself_is_a_cycle() {
    for l in all_layouts() {
        let mut img = standard_image(l, 0);
        let f = img.threads[0].py_frames()[1];
        img.write_u64(img.frame_back_addr(f), f);
        assert_eq!(
            sample_error(&img, DEFAULT_MAX_DEPTH),
            Some(WalkError::Cycle("frame")),
            "{}",
            ver(l)
        );
        // The leaf frame too.
        let mut img = standard_image(l, 0);
        let f = img.threads[2].py_frames()[0];
        img.write_u64(img.frame_back_addr(f), f);
        assert_eq!(
            sample_error(&img, DEFAULT_MAX_DEPTH),
            Some(WalkError::Cycle("frame")),
            "{}",
            ver(l)
        );
    }
}

#[test]
fn three_frame_loop_is_a_cycle_within_max_depth_steps() {
    for l in all_layouts() {
        // A loop is found once max_depth frames were visited, if it is shorter than that
        // (a longer one is indistinguishable from a deep stack: truncated).
        for max_depth in [5, 8, 64, DEFAULT_MAX_DEPTH] {
            let mut img = standard_image(l, 0);
            let f = img.threads[0].py_frames();
            // f[0] -> f[1] -> (shim on 3.12+) -> f[2] -> f[0] -> ...
            img.write_u64(img.frame_back_addr(f[2]), f[0]);
            let mem = CountingMemory::new(&img.mem);
            let w = img.walker(max_depth);
            let mut raw = RawThread::default();
            let r = w.walk_thread(&mem, img.threads[0].tstate, &mut raw);
            assert_eq!(
                r,
                Err(WalkError::Cycle("frame")),
                "{} depth {max_depth}",
                ver(l)
            );
            // Bounded: at most 4 reads per frame visited, plus the thread's own fields.
            assert!(
                mem.reads.get() <= 4 * max_depth as u64 + 8,
                "{} {}",
                ver(l),
                mem.reads.get()
            );
        }
        if !has_shims(l) {
            // A loop exactly max_depth long: a truncated stack of its frames.
            let mut img = standard_image(l, 0);
            let f = img.threads[0].py_frames();
            img.write_u64(img.frame_back_addr(f[2]), f[0]);
            let mut raw = RawThread::default();
            img.walker(3)
                .walk_thread(&img.mem, img.threads[0].tstate, &mut raw)
                .unwrap();
            assert!(raw.truncated && raw.frames.len() == 3, "{}", ver(l));
        }
    }
}

#[test]
fn loop_of_entry_frames_is_a_cycle() {
    for l in all_layouts().into_iter().filter(|l| has_shims(l)) {
        let mut b = ImageBuilder::new(l);
        let c = b.code("f", "/srv/f.py", 1);
        b.thread_frames(vec![
            FrameSpec::Py { code: c, slot: 0 },
            FrameSpec::Shim,
            FrameSpec::Shim,
        ]);
        let mut img = b.build();
        let f = img.threads[0].frames.clone();
        img.write_u64(img.frame_back_addr(f[2].addr), f[1].addr);
        let w = img.walker(DEFAULT_MAX_DEPTH);
        let mut raw = RawThread::default();
        let r = w.walk_thread(&img.mem, img.threads[0].tstate, &mut raw);
        assert_eq!(
            r,
            Err(WalkError::Cycle("frame")),
            "{}: got {} frames, truncated = {}",
            ver(l),
            raw.frames.len(),
            raw.truncated
        );
    }
}

#[test]
fn thread_list_cycles() {
    for l in all_layouts() {
        // Back to the head, and to itself: caught at once.
        for to in [0usize, 2] {
            let mut img = standard_image(l, 0);
            let last = img.threads[2].tstate;
            let target = img.threads[to].tstate;
            img.write_u64(img.tstate_next_addr(last), target);
            let w = img.walker(DEFAULT_MAX_DEPTH);
            let mem = CountingMemory::new(&img.mem);
            assert_eq!(
                w.thread_states(&mem, img.main_interp()),
                Err(WalkError::Cycle("thread")),
                "{} -> thread {to}",
                ver(l)
            );
            assert!(mem.reads.get() <= 4, "{}", ver(l));
        }
        // Into the middle: caught after MAX_THREADS steps, not an endless loop.
        let mut img = standard_image(l, 0);
        let (mid, last) = (img.threads[1].tstate, img.threads[2].tstate);
        img.write_u64(img.tstate_next_addr(last), mid);
        let mem = CountingMemory::new(&img.mem);
        let t0 = Instant::now();
        let r = img
            .walker(DEFAULT_MAX_DEPTH)
            .thread_states(&mem, img.main_interp());
        assert_eq!(r, Err(WalkError::Cycle("thread")), "{}", ver(l));
        assert!(mem.reads.get() <= MAX_THREADS as u64 + 2, "{}", ver(l));
        assert!(t0.elapsed() < Duration::from_secs(5), "{}", ver(l));
    }
}

#[test]
fn interpreter_list_cycle() {
    for l in all_layouts() {
        let mut img = standard_image(l, 2);
        let (first, last) = (img.interps[0], img.main_interp());
        img.write_u64(img.interp_next_addr(last), first);
        let mem = CountingMemory::new(&img.mem);
        assert_eq!(
            img.walker(100).main_interpreter(&mem),
            Err(WalkError::Cycle("interpreter")),
            "{}",
            ver(l)
        );
        assert!(mem.reads.get() <= MAX_INTERPRETERS as u64 + 1);
    }
}

#[test]
fn pointers_into_unmapped_memory_are_read_errors() {
    for l in all_layouts() {
        let v = ver(l);
        // A frame's back pointer into a hole.
        let mut img = standard_image(l, 0);
        let f = img.threads[0].py_frames()[2];
        let hole = img.unmapped();
        img.write_u64(img.frame_back_addr(f), hole);
        assert_eq!(
            sample_error(&img, DEFAULT_MAX_DEPTH),
            Some(WalkError::Read),
            "{v} back"
        );
        // The top frame pointer into a hole.
        let mut img = standard_image(l, 0);
        let slot = img.top_frame_slot(1);
        img.write_u64(slot, hole + 0x40);
        assert_eq!(
            sample_error(&img, DEFAULT_MAX_DEPTH),
            Some(WalkError::Read),
            "{v} top"
        );
        // A frame's memory unmapped (3.11+: its whole data-stack chunk).
        let mut img = standard_image(l, 0);
        let f = img.threads[1].py_frames()[0];
        img.unmap(f);
        assert_eq!(
            sample_error(&img, DEFAULT_MAX_DEPTH),
            Some(WalkError::Read),
            "{v} unmapped frame"
        );
        // A frame cut in the middle of its fields.
        let mut img = standard_image(l, 0);
        let f = img.threads[2].py_frames()[0];
        let (start, _) = img.region_of(f).unwrap();
        let cut = (f - start) as usize + l.frame_back.min(l.frame_code) as usize + 4;
        img.truncate(f, cut);
        assert_eq!(
            sample_error(&img, DEFAULT_MAX_DEPTH),
            Some(WalkError::Read),
            "{v} truncated frame"
        );
        // A thread state and the interpreter unmapped.
        let mut img = standard_image(l, 0);
        let ts = img.threads[1].tstate;
        img.unmap(ts);
        assert_eq!(
            sample_error(&img, DEFAULT_MAX_DEPTH),
            Some(WalkError::Read),
            "{v} tstate"
        );
        let mut img = standard_image(l, 0);
        let i = img.main_interp();
        img.unmap(i);
        assert_eq!(
            sample_error(&img, DEFAULT_MAX_DEPTH),
            Some(WalkError::Read),
            "{v} interp"
        );
        // A code object, its name, its file name, its line table unmapped.
        for what in ["code", "name", "filename", "linetable"] {
            let mut img = standard_image(l, 0);
            let c = img.codes[1].clone();
            let a = match what {
                "code" => c.addr,
                "name" => c.qualname.unwrap_or(c.name),
                "filename" => c.filename,
                _ => c.linetable,
            };
            img.unmap(a);
            assert_eq!(
                sample_error(&img, DEFAULT_MAX_DEPTH),
                Some(WalkError::Read),
                "{v} {what}"
            );
        }
    }
}

#[test]
fn null_low_and_misaligned_pointers_are_bad_pointers() {
    for l in all_layouts() {
        let v = ver(l);
        for bad in [0u64, 8, 0xff8, 0x1004] {
            // As a code pointer: the walker passes it on, the code reader rejects it.
            let mut img = standard_image(l, 0);
            let f = img.threads[0].py_frames()[1];
            img.write_u64(img.frame_code_addr(f), bad);
            assert_eq!(
                sample_error(&img, DEFAULT_MAX_DEPTH),
                Some(WalkError::BadPointer("code object")),
                "{v} code {bad:#x}"
            );
            // A real code object's address, misaligned by 4.
            let c = img.codes[0].addr;
            img.write_u64(img.frame_code_addr(f), c + 4);
            assert_eq!(
                sample_error(&img, DEFAULT_MAX_DEPTH),
                Some(WalkError::BadPointer("code object")),
                "{v} code+4"
            );
        }
        for bad in [0x10u64, 0xff8, 0x1004] {
            // As a frame pointer (0 ends the list, so it is not here).
            let mut img = standard_image(l, 0);
            let f = img.threads[0].py_frames()[0];
            img.write_u64(img.frame_back_addr(f), bad);
            assert_eq!(
                sample_error(&img, DEFAULT_MAX_DEPTH),
                Some(WalkError::BadPointer("frame")),
                "{v} frame {bad:#x}"
            );
            // As a thread state.
            let mut img = standard_image(l, 0);
            let ts = img.threads[0].tstate;
            img.write_u64(img.tstate_next_addr(ts), bad);
            assert_eq!(
                sample_error(&img, DEFAULT_MAX_DEPTH),
                Some(WalkError::BadPointer("thread state")),
                "{v} tstate {bad:#x}"
            );
            // As an interpreter.
            let mut img = standard_image(l, 0);
            let head = img.interp_head_addr;
            img.write_u64(head, bad);
            assert_eq!(
                sample_error(&img, DEFAULT_MAX_DEPTH),
                Some(WalkError::BadPointer("interpreter")),
                "{v} interp {bad:#x}"
            );
        }
        // A code object's name and line table pointers.
        let mut img = standard_image(l, 0);
        let c = img.codes[1].addr;
        img.write_u64(c + l.code_qualname.unwrap_or(l.code_name) as u64, 0x10);
        assert_eq!(
            sample_error(&img, DEFAULT_MAX_DEPTH),
            Some(WalkError::BadPointer("string")),
            "{v}"
        );
        let mut img = standard_image(l, 0);
        img.write_u64(c + l.code_linetable as u64, 0);
        assert_eq!(
            sample_error(&img, DEFAULT_MAX_DEPTH),
            Some(WalkError::BadPointer("bytes")),
            "{v}"
        );
    }
}

#[test]
fn code_pointer_misaligned_by_one_is_a_bad_pointer() {
    // 3.14+ tags f_executable (a _PyStackRef): there the low bits are rightly masked.
    for l in all_layouts()
        .into_iter()
        .filter(|l| (l.major, l.minor) < (3, 14))
    {
        let mut img = standard_image(l, 0);
        let f = img.threads[0].py_frames()[1];
        let c = img.codes[0].addr;
        img.write_u64(img.frame_code_addr(f), c + 1);
        assert_eq!(
            sample_error(&img, DEFAULT_MAX_DEPTH),
            Some(WalkError::BadPointer("code object")),
            "{}",
            ver(l)
        );
    }
}

#[test]
fn an_object_whose_type_is_not_code_is_bad_code() {
    for l in all_layouts() {
        let v = ver(l);
        // A fresh reader checks the type's name.
        for name in ["str", "cod", "codex", "Code", ""] {
            let mut img = standard_image(l, 0);
            let ty = if name == "str" {
                img.types.str_
            } else {
                img.new_type(name)
            };
            let c = img.codes[2].addr;
            img.write_u64(img.ob_type_addr(c), ty);
            assert_eq!(
                sample_error(&img, DEFAULT_MAX_DEPTH),
                Some(WalkError::BadCode("not a code object")),
                "{v} type {name:?}"
            );
        }
        // A frame pointing at another object (a type object: large enough for the header).
        let mut img = standard_image(l, 0);
        let f = img.threads[1].py_frames()[0];
        let s = img.types.frame;
        img.write_u64(img.frame_code_addr(f), s);
        assert_eq!(
            sample_error(&img, DEFAULT_MAX_DEPTH),
            Some(WalkError::BadCode("not a code object")),
            "{v}"
        );
        // A warm reader knows PyCode_Type's address: another type fails without a name read.
        let mut img = standard_image(l, 0);
        let w = img.walker(DEFAULT_MAX_DEPTH);
        let mut r = new_reader(l, None);
        ok_threads(sample_pass(&img.mem, &w, &mut r));
        let fake_code = img.new_type("code");
        let c = img.codes[3].addr;
        img.write_u64(img.ob_type_addr(c), fake_code);
        assert_eq!(
            first_error(&sample_pass(&img.mem, &w, &mut r)),
            Some(WalkError::BadCode("not a code object")),
            "{v} warm"
        );
        // The type's name pointer unreadable.
        let mut img = standard_image(l, 0);
        let tc = img.types.code;
        img.write_u64(img.type_name_addr(tc), img.unmapped());
        assert_eq!(
            sample_error(&img, DEFAULT_MAX_DEPTH),
            Some(WalkError::Read),
            "{v} tp_name"
        );
    }
}

/// Decode code object `i` with a fresh reader over a counting memory.
fn decode_counted(
    img: &FakeImage,
    i: usize,
) -> (Result<std::rc::Rc<CodeInfo>, WalkError>, usize, usize) {
    let mem = CountingMemory::new(&img.mem);
    let mut r = new_reader(&img.layout, None);
    let (res, alloc) = largest_alloc_during(|| r.code(&mem, img.codes[i].addr));
    (res, mem.largest.get(), alloc)
}

#[test]
fn huge_string_lengths_are_bounded() {
    for l in all_layouts() {
        let v = ver(l);
        let huge: &[u64] = &[
            1 << 40,
            u64::MAX,
            i64::MAX as u64,
            MAX_TABLE as u64 + 1,
            MAX_STRING as u64 + 1,
        ];
        for &len in huge {
            let mut img = standard_image(l, 0);
            let c = img.codes[0].clone();
            let s = c.qualname.unwrap_or(c.name);
            img.write_u64(img.str_length_addr(s), len);
            let (res, largest_read, largest_alloc) = decode_counted(&img, 0);
            // The string's region is small: an error (not a gigabyte buffer).
            match res {
                Err(WalkError::Read) | Err(WalkError::BadCode(_)) => {}
                other => panic!("{v} len {len:#x}: {other:?}"),
            }
            assert!(largest_read <= 4 * MAX_STRING, "{v}: read {largest_read}");
            assert!(
                largest_alloc <= 4 * MAX_STRING + 4096,
                "{v}: allocated {largest_alloc}"
            );
        }
        // With plenty of readable memory after it, a huge string is cut at MAX_STRING.
        let mut img = standard_image(l, 0);
        let hdr = match l.string_kind {
            StringKind::Unicode => l.unicode_ascii_size,
            StringKind::Bytes => l.bytes_sval,
        } as usize;
        let mut data = vec![b'x'; hdr + 4 * MAX_STRING + 64];
        data[..hdr].fill(0);
        let s = img.map_new(data);
        let str_type = img.types.str_;
        img.write_u64(img.ob_type_addr(s), str_type);
        let big = match l.string_kind {
            StringKind::Unicode => {
                img.write_u32(img.str_state_addr(s), img.ascii_state());
                1u64 << 40
            }
            // Python 2 strings longer than MAX_TABLE are refused; shorter ones are cut.
            StringKind::Bytes => MAX_TABLE as u64,
        };
        img.write_u64(img.str_length_addr(s), big);
        let c = img.codes[0].addr;
        img.write_u64(c + l.code_filename as u64, s);
        let (res, largest_read, _) = decode_counted(&img, 0);
        let info = res.unwrap_or_else(|e| panic!("{v}: {e:?}"));
        assert_eq!(info.filename.len(), MAX_STRING, "{v}");
        assert!(info.filename.bytes().all(|b| b == b'x'), "{v}");
        assert!(largest_read <= MAX_STRING, "{v}: read {largest_read}");
        // 4-byte and 2-byte kinds read at most 4 * MAX_STRING bytes.
        if l.string_kind == StringKind::Unicode {
            for kind in [2u32, 4] {
                let state = (kind << l.unicode_kind_shift) | (1 << (l.unicode_kind_shift + 3));
                img.write_u32(img.str_state_addr(s), state);
                let (res, largest_read, _) = decode_counted(&img, 0);
                let info = res.unwrap_or_else(|e| panic!("{v} kind {kind}: {e:?}"));
                assert_eq!(info.filename.chars().count(), MAX_STRING, "{v} kind {kind}");
                assert!(
                    largest_read <= kind as usize * MAX_STRING,
                    "{v}: read {largest_read}"
                );
            }
            // Bad kinds are refused.
            for kind in [0u32, 3, 5, 7] {
                let state = (kind << l.unicode_kind_shift) | (3 << (l.unicode_kind_shift + 3));
                img.write_u32(img.str_state_addr(s), state);
                assert_eq!(
                    decode_counted(&img, 0).0.err(),
                    Some(WalkError::BadCode("string kind")),
                    "{v}"
                );
            }
        }
    }
}

#[test]
fn huge_line_tables_and_bytecode_are_bounded() {
    for l in all_layouts() {
        let v = ver(l);
        for len in [MAX_TABLE as u64 + 1, u64::MAX, 1 << 40] {
            let mut img = standard_image(l, 0);
            let t = img.codes[0].linetable;
            img.write_u64(img.bytes_size_addr(t), len);
            let (res, largest_read, alloc) = decode_counted(&img, 0);
            assert_eq!(
                res.err(),
                Some(WalkError::BadCode("bytes too long")),
                "{v} {len:#x}"
            );
            assert!(largest_read <= 256 && alloc <= 4096, "{v}");
        }
        // Exactly MAX_TABLE: one bounded read, which fails on this small region.
        let mut img = standard_image(l, 0);
        let t = img.codes[0].linetable;
        img.write_u64(img.bytes_size_addr(t), MAX_TABLE as u64);
        let (res, largest_read, _) = decode_counted(&img, 0);
        assert_eq!(res.err(), Some(WalkError::Read), "{v}");
        assert_eq!(largest_read, MAX_TABLE, "{v}");
        // A huge bytecode length is clamped (not read unless opcodes are captured).
        let mut img = standard_image(l, 0);
        let c = img.codes[0].clone();
        let size_field = match c.co_code {
            Some(b) => img.bytes_size_addr(b),
            None => c.addr + l.ob_size as u64, // ob_size of the code object
        };
        img.write_u64(size_field, u64::MAX);
        let (res, _, _) = decode_counted(&img, 0);
        let info = res.unwrap_or_else(|e| panic!("{v}: {e:?}"));
        assert!(
            info.code_len <= 2 * MAX_TABLE as u64,
            "{v}: {}",
            info.code_len
        );
    }
}

#[test]
fn bytecode_is_clamped_to_max_table_bytes() {
    for l in all_layouts() {
        let mut img = standard_image(l, 0);
        let c = img.codes[0].clone();
        let size_field = match c.co_code {
            Some(b) => img.bytes_size_addr(b),
            None => c.addr + l.ob_size as u64,
        };
        img.write_u64(size_field, u64::MAX);
        let info = decode_counted(&img, 0).0.unwrap();
        assert!(
            info.code_len <= MAX_TABLE as u64,
            "{}: {}",
            ver(l),
            info.code_len
        );
    }
}

#[test]
fn garbage_line_tables_give_line_zero_not_a_panic() {
    for l in all_layouts() {
        let mut img = standard_image(l, 0);
        let t = img.codes[1].linetable;
        let n = img.read_u64(img.bytes_size_addr(t)) as usize;
        img.write(t + l.bytes_sval as u64, &vec![0xff; n]);
        let mut r = new_reader(l, None);
        let threads = ok_threads(sample_pass(&img.mem, &img.walker(100), &mut r));
        for (got, want) in threads.iter().zip(&img.threads) {
            for (g, e) in got.frames.iter().zip(&want.expected) {
                assert_eq!(g.function, e.function);
                if e.file != img.codes[1].spec.file {
                    assert_eq!(g.line, e.line);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Known bugs: integer overflow on pointers near the top of the address space. Debug builds
// (overflow checks on, as `cargo test`) panic; release builds wrap and read a low address.

/// The top-most aligned pointers that pass `check_ptr` / the reader's own checks.
const HIGH: [u64; 3] = [u64::MAX - 7, !0xfff, u64::MAX];

/// Sample `img` under catch_unwind; Err(panic message) on a panic.
fn sample_no_panic(img: &FakeImage) -> Result<Option<WalkError>, String> {
    catch_unwind(AssertUnwindSafe(|| sample_error(img, DEFAULT_MAX_DEPTH))).map_err(panic_message)
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic)".into())
}

/// Write each HIGH value at the field `at(img)` returns; every sample must be an error.
fn high_pointer_case(what: &str, at: impl Fn(&FakeImage) -> Option<u64>) {
    let mut panics = Vec::new();
    for l in all_layouts() {
        for v in HIGH {
            let mut img = standard_image(l, 0);
            let Some(addr) = at(&img) else { continue };
            img.write_u64(addr, v);
            match sample_no_panic(&img) {
                Ok(Some(_)) => {}
                Ok(None) => panics.push(format!("{} {what}={v:#x}: sample succeeded", ver(l))),
                Err(m) => panics.push(format!("{} {what}={v:#x}: panic: {m}", ver(l))),
            }
        }
    }
    assert!(panics.is_empty(), "{}", panics.join("\n"));
}

#[test]
fn bug_frame_pointer_near_top_of_address_space() {
    high_pointer_case("frame.back", |img| {
        Some(img.frame_back_addr(img.threads[0].py_frames()[0]))
    });
}

#[test]
fn bug_tstate_pointer_near_top_of_address_space() {
    high_pointer_case("tstate.next", |img| {
        Some(img.tstate_next_addr(img.threads[0].tstate))
    });
}

#[test]
fn bug_cframe_pointer_near_top_of_address_space() {
    high_pointer_case("tstate.cframe", |img| {
        img.layout
            .cframe_current_frame
            .map(|_| img.threads[0].tstate + img.layout.tstate_frame as u64)
    });
}

#[test]
fn bug_interpreter_pointer_near_top_of_address_space() {
    high_pointer_case("interp head", |img| Some(img.interp_head_addr));
}

#[test]
fn bug_code_type_pointer_near_top_of_address_space() {
    // The type is checked by name on the first decode only: the leaf of the first thread.
    high_pointer_case("code.ob_type", |img| {
        let leaf = img.threads[0].py_frames()[0];
        Some(img.ob_type_addr(img.read_u64(img.frame_code_addr(leaf))))
    });
}

#[test]
fn bug_string_pointer_near_top_of_address_space() {
    high_pointer_case("co_name", |img| {
        let l = &img.layout;
        Some(img.codes[0].addr + l.code_qualname.unwrap_or(l.code_name) as u64)
    });
}

#[test]
fn bug_linetable_pointer_near_top_of_address_space() {
    high_pointer_case("co_linetable", |img| {
        Some(img.codes[0].addr + img.layout.code_linetable as u64)
    });
}

#[test]
fn bug_co_code_pointer_near_top_of_address_space() {
    high_pointer_case("co_code", |img| {
        img.layout
            .code_code
            .map(|off| img.codes[0].addr + off as u64)
    });
}

// ---------------------------------------------------------------------------------------
// Property test: random corruption of clean images; never a panic, always bounded.

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so nearby seeds give unrelated streams; never 0.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }
    /// xorshift64*
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// A value for a pointer field: mostly plausible, sometimes garbage. `high` adds pointers
/// near 2^64 (the overflow bugs above).
fn pointer_value(rng: &mut Rng, img: &FakeImage, high: bool) -> u64 {
    let ptrs = img.pointer_fields();
    let valid = img.read_u64_or(*rng.pick(&ptrs), BASE);
    let v = match rng.below(if high { 16 } else { 14 }) {
        0 => 0,
        1 => *rng.pick(&[1u64, 8, 0xff8, 0x1000, 0x1001, 0x1004]),
        2 => *rng.pick(&[
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            1 << 47,
            1 << 63,
            i64::MAX as u64 & !7,
        ]),
        3 | 4 => valid,
        // (NULL - 8 is near 2^64: only with `high`.)
        5 if valid < 0x1000 && !high => valid,
        5 => {
            valid.wrapping_add(*rng.pick(&[1u64, 4, 8, 16, 4096, (-8i64) as u64, (-16i64) as u64]))
        }
        6 | 7 => rng.pick(img.objects()).addr,
        8 => rng.pick(img.objects()).addr + 8 * rng.below(8) as u64,
        9 => rng.pick(img.fields()).addr,
        10 => HOLE + 8 * rng.below(1024) as u64,
        11 => rng.next() & !7,
        12 => rng.next(),
        13 => BASE + 8 * rng.below(1 << 20) as u64,
        _ => *rng.pick(&HIGH),
    };
    not_high(v, high)
}

/// Without `high`, values within 64 KiB of 2^64 (the known overflow bugs) are halved:
/// any integer may end up in a pointer field through a swap.
fn not_high(v: u64, high: bool) -> u64 {
    if !high && v > u64::MAX - 0xffff {
        v >> 1
    } else {
        v
    }
}

/// A value for an integer field (lengths, sizes, lines, ids, state bits).
fn int_value(rng: &mut Rng, high: bool) -> u64 {
    let v = match rng.below(8) {
        0 => *rng.pick(&[0u64, 1, 2, 3, 0x7f, 0x80, 0xff, 0xffff]),
        1 => *rng.pick(&[
            u32::MAX as u64,
            i32::MAX as u64,
            0x8000_0000,
            u64::MAX,
            i64::MAX as u64,
            1 << 63,
        ]),
        2 => *rng.pick(&[
            MAX_STRING as u64,
            MAX_STRING as u64 + 1,
            MAX_TABLE as u64,
            MAX_TABLE as u64 + 1,
            2 * MAX_TABLE as u64,
        ]),
        3 => 1 << rng.below(64),
        4 => rng.next() & 0xff,
        5 => rng.next() & 0xffff_ffff,
        _ => rng.next(),
    };
    not_high(v, high)
}

impl FakeImage {
    fn read_u64_or(&self, addr: u64, or: u64) -> u64 {
        self.mem.read_u64(addr).unwrap_or(or)
    }
}

/// Apply one random corruption; returns its description (for the failure report).
fn corrupt(rng: &mut Rng, img: &mut FakeImage, high: bool) -> String {
    let l = img.layout.clone();
    match rng.below(13) {
        // Random value over a random field the walker reads.
        0..=2 => {
            let f = *rng.pick(img.fields());
            let v = match f.kind {
                FieldKind::Ptr => pointer_value(rng, img, high),
                FieldKind::Int(_) => int_value(rng, high),
            };
            let w = f.width();
            img.write_lossy(f.addr, &v.to_le_bytes()[..w]);
            format!("{} at {:#x} = {v:#x}", f.what, f.addr)
        }
        // Random bytes at a random place of a random region.
        3 => {
            let regions = img.regions();
            let (start, len) = *rng.pick(&regions);
            let off = rng.below(len.max(1)) as u64;
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            img.write_lossy(start + off, &bytes);
            format!("{n} random bytes at {:#x}", start + off)
        }
        // Swap two pointers.
        4 => {
            let ptrs = img.pointer_fields();
            let (a, b) = (*rng.pick(&ptrs), *rng.pick(&ptrs));
            let (va, vb) = (img.read_u64_or(a, 0), img.read_u64_or(b, 0));
            img.write_lossy(a, &vb.to_le_bytes());
            img.write_lossy(b, &va.to_le_bytes());
            format!("swap pointers at {a:#x} and {b:#x}")
        }
        // Torn write: only some bytes of a new pointer landed.
        5 => {
            let ptrs = img.pointer_fields();
            let a = *rng.pick(&ptrs);
            let v = pointer_value(rng, img, high).to_le_bytes();
            let k = 1 + rng.below(7);
            if rng.below(2) == 0 {
                img.write_lossy(a, &v[..k]);
            } else {
                img.write_lossy(a + k as u64, &v[k..]);
            }
            format!("torn write of {k} bytes at {a:#x}")
        }
        // Truncate a region.
        6 => {
            let regions = img.regions();
            let (start, len) = *rng.pick(&regions);
            let n = rng.below(len.max(1));
            img.truncate(start, n);
            format!("truncate {start:#x} to {n} bytes")
        }
        // Unmap a region.
        7 => {
            let regions = img.regions();
            let (start, _) = *rng.pick(&regions);
            img.unmap(start);
            format!("unmap {start:#x}")
        }
        // A cycle in a frame or thread list, or a list pointing into another list.
        8 => {
            let t = rng.below(img.threads.len());
            let frames = img.threads[t].frames.clone();
            if frames.is_empty() || rng.below(4) == 0 {
                let a = img.threads[rng.below(img.threads.len())].tstate;
                let b = img.threads[rng.below(img.threads.len())].tstate;
                img.write_lossy(img.tstate_next_addr(a), &b.to_le_bytes());
                format!("tstate {a:#x}.next = {b:#x}")
            } else {
                let a = frames[rng.below(frames.len())].addr;
                let other = &img.threads[rng.below(img.threads.len())].frames;
                let b = if other.is_empty() {
                    a
                } else {
                    other[rng.below(other.len())].addr
                };
                img.write_lossy(img.frame_back_addr(a), &b.to_le_bytes());
                format!("frame {a:#x}.back = {b:#x}")
            }
        }
        // Garbage inside a line table.
        9 => {
            let c = img.codes[rng.below(img.codes.len())].clone();
            let n = img.read_u64_or(img.bytes_size_addr(c.linetable), 0).min(64) as usize;
            let off = rng.below(n.max(1));
            let bytes: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
            img.write_lossy(c.linetable + l.bytes_sval as u64 + off as u64, &bytes);
            format!("line table of {} garbage at {off}", c.spec.name)
        }
        // String state bits (kinds, compact/legacy, ascii).
        10 => {
            let c = img.codes[rng.below(img.codes.len())].clone();
            let s = *rng.pick(&[c.name, c.filename]);
            if l.string_kind == StringKind::Unicode {
                let v = rng.next() as u32;
                img.write_lossy(img.str_state_addr(s), &v.to_le_bytes());
                format!("str {s:#x}.state = {v:#x}")
            } else {
                let v = int_value(rng, high);
                img.write_lossy(img.str_length_addr(s), &v.to_le_bytes());
                format!("str {s:#x}.ob_size = {v:#x}")
            }
        }
        // A pointer into a large region of plausible garbage (heap arenas are large): reads
        // of up to MAX_TABLE and more succeed there, with sizes, self-pointers and zeros.
        11 => {
            const BIG: usize = 2 * MAX_TABLE + MAX_TABLE / 4;
            let base = img.alloc(BIG as u64);
            // A 4 KiB page of garbage, repeated (generating 2 MiB per case is too slow).
            let mut page = vec![0u8; 4096];
            for w in page.chunks_exact_mut(8) {
                let v = match rng.below(10) {
                    0..=3 => 0,
                    4 | 5 => rng.next() & 0xff,
                    6 => base + ((rng.next() % BIG as u64) & !7),
                    7 => int_value(rng, high),
                    8 => pointer_value(rng, img, high),
                    _ => rng.next(),
                };
                w.copy_from_slice(&v.to_le_bytes());
            }
            let mut data = Vec::with_capacity(BIG);
            while data.len() < BIG {
                data.extend_from_slice(&page[..page.len().min(BIG - data.len())]);
            }
            img.write(base, &data);
            let f = *rng.pick(&img.pointer_fields());
            let into = base + ((rng.next() % (BIG as u64 / 2)) & !7);
            img.write_lossy(f, &into.to_le_bytes());
            format!("pointer at {f:#x} into a {BIG}-byte garbage region at {into:#x}")
        }
        // A frame's instruction and owner.
        _ => {
            let t = rng.below(img.threads.len());
            let Some(f) = img.threads[t].frames.first().map(|f| f.addr) else {
                return "nothing".into();
            };
            let v = int_value(rng, high);
            img.write_lossy(img.frame_instr_addr(f), &v.to_le_bytes());
            if let Some(o) = img.frame_owner_addr(f) {
                let ov = rng.below(6) as u8;
                img.write_lossy(o, &[ov]);
            }
            format!("frame {f:#x} instr = {v:#x}")
        }
    }
}

/// What one case may allocate at most, from the crate's MAX_* constants.
fn alloc_bound(l: &Layout, max_depth: usize, opcodes: bool) -> usize {
    let read = read_bound(l, opcodes);
    let code_len = if l.code_adaptive.is_some() {
        2 * MAX_TABLE
    } else {
        MAX_TABLE
    };
    [
        read,
        // CodeInfo::owners: one u32 per byte of bytecode.
        if opcodes { 4 * code_len } else { 0 },
        // thread_states' Vec<u64> (and its sorted copy).
        MAX_THREADS.next_power_of_two() * 8,
        // walk_thread's frames and this test's resolved frames.
        max_depth.next_power_of_two() * std::mem::size_of::<RawFrame>(),
        max_depth.next_power_of_two() * std::mem::size_of::<Frame>(),
        // Strings: 4 * MAX_STRING bytes read, up to 3 bytes of UTF-8 per byte when lossy.
        3 * 4 * MAX_STRING,
        // The code cache (HashMap of up to 100k entries; a few are ever made here).
        1 << 16,
    ]
    .into_iter()
    .max()
    .unwrap()
}

/// The largest single read: MAX_TABLE (line tables; ≤3.10 `co_code`), 2 * MAX_TABLE for
/// 3.11+ bytecode with opcode capture (`units.min(MAX_TABLE) * 2`).
fn read_bound(l: &Layout, opcodes: bool) -> usize {
    if opcodes && l.code_adaptive.is_some() {
        2 * MAX_TABLE
    } else {
        MAX_TABLE
    }
}

/// The image of the property test: the standard image with one sub-interpreter.
fn fuzz_images() -> Vec<FakeImage> {
    all_layouts()
        .into_iter()
        .map(|l| {
            let mut img = standard_image(l, 1);
            // 3.12+: one code object instrumented (side tables read with opcode capture).
            if l.code_monitoring.is_some() {
                if let Some(t) = opcodes::table_for(l.major, l.minor, l.free_threaded) {
                    img.instrument_lines(1, t.opcode("NOP").unwrap());
                }
            }
            img
        })
        .collect()
}

struct CaseOutcome {
    elapsed: Duration,
    error: Option<WalkError>,
    largest_read: usize,
    largest_alloc: usize,
}

/// One property-test case. Err(description) on a violated property.
fn run_case(base: &[FakeImage], seed: u64, high: bool) -> Result<CaseOutcome, String> {
    let mut rng = Rng::new(seed);
    let mut img = base[(seed % base.len() as u64) as usize].clone();
    let l = img.layout.clone();
    let max_depth = if rng.below(8) == 0 {
        DEFAULT_MAX_DEPTH
    } else {
        64
    };
    let table = if rng.below(2) == 0 {
        opcodes::table_for(l.major, l.minor, l.free_threaded)
    } else {
        None
    };
    let warm = rng.below(2) == 0;
    let mut ops = Vec::new();
    for _ in 0..1 + rng.below(4) {
        ops.push(corrupt(&mut rng, &mut img, high));
    }
    let describe = |what: String| {
        format!(
            "seed {seed} ({}, max_depth {max_depth}, opcodes {}, warm {warm}): {what}; corruptions: [{}]",
            ver(&l),
            table.is_some(),
            ops.join("; ")
        )
    };
    let base_img = &base[(seed % base.len() as u64) as usize];
    let w = img.walker(max_depth);
    let start = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut r = new_reader(&l, table);
        if warm {
            // A reader that has decoded the clean image: exercises cache re-validation.
            ok_threads(sample_pass(&base_img.mem, &w, &mut r));
        }
        let mem = CountingMemory::new(&img.mem);
        let (sample, largest_alloc) = largest_alloc_during(|| sample_pass(&mem, &w, &mut r));
        (sample, largest_alloc, mem.largest.get(), r.cached())
    }));
    let elapsed = start.elapsed();
    let (sample, largest_alloc, largest_read, cached) =
        result.map_err(|p| describe(format!("PANIC: {}", panic_message(p))))?;
    if elapsed > Duration::from_secs(2) {
        return Err(describe(format!("took {elapsed:?}")));
    }
    if largest_read > read_bound(&l, table.is_some()) {
        return Err(describe(format!("a single read of {largest_read} bytes")));
    }
    let ab = alloc_bound(&l, max_depth, table.is_some());
    if largest_alloc > ab {
        return Err(describe(format!(
            "a single allocation of {largest_alloc} bytes (bound {ab})"
        )));
    }
    if cached > 100_001 {
        return Err(describe(format!("{cached} cached code objects")));
    }
    if let Ok(threads) = &sample {
        if threads.len() > MAX_THREADS {
            return Err(describe(format!("{} threads", threads.len())));
        }
        for t in threads.iter().flatten() {
            if t.raw_frames > max_depth || t.frames.len() > max_depth {
                return Err(describe(format!("{} frames > max_depth", t.raw_frames)));
            }
            for f in &t.frames {
                if f.function.chars().count() > MAX_STRING || f.file.chars().count() > MAX_STRING {
                    return Err(describe("a string longer than MAX_STRING".into()));
                }
            }
        }
    }
    Ok(CaseOutcome {
        elapsed,
        error: first_error(&sample),
        largest_read,
        largest_alloc,
    })
}

fn fuzz(cases: u64, first_seed: u64, high: bool) {
    let base = fuzz_images();
    // The cases run on a worker; this thread is a watchdog, so an endless loop is reported
    // with its seed instead of hanging the test run.
    let (tx, rx) = std::sync::mpsc::channel::<(u64, Result<CaseOutcome, String>)>();
    let worker = std::thread::spawn(move || {
        for seed in first_seed..first_seed + cases {
            let r = catch_unwind(AssertUnwindSafe(|| run_case(&base, seed, high))).unwrap_or_else(
                |p| {
                    Err(format!(
                        "seed {seed}: panic outside the sample pass: {}",
                        panic_message(p)
                    ))
                },
            );
            if tx.send((seed, r)).is_err() {
                return;
            }
        }
    });
    let t0 = Instant::now();
    let mut failures = Vec::new();
    let mut outcomes: std::collections::BTreeMap<String, u64> = Default::default();
    let mut slowest = (Duration::ZERO, 0u64);
    let (mut largest_read, mut largest_alloc, mut big_reads) = (0usize, 0usize, 0u64);
    let mut last = first_seed;
    for _ in 0..cases {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok((seed, r)) => {
                last = seed;
                match r {
                    Ok(o) => {
                        let key = match o.error {
                            None => "clean sample".to_string(),
                            Some(e) => format!("{e:?}"),
                        };
                        *outcomes.entry(key).or_default() += 1;
                        largest_read = largest_read.max(o.largest_read);
                        largest_alloc = largest_alloc.max(o.largest_alloc);
                        big_reads += (o.largest_read >= 64 << 10) as u64;
                        if o.elapsed > slowest.0 {
                            slowest = (o.elapsed, seed);
                        }
                    }
                    Err(msg) => failures.push(msg),
                }
            }
            Err(_) => panic!(
                "case with seed {} did not finish within 30 s (endless loop?); \
                 replay with WALKER_FUZZ_SEED={}",
                last + 1,
                last + 1
            ),
        }
    }
    worker.join().unwrap();
    println!(
        "fuzz: {cases} cases from seed {first_seed} in {:?}; slowest {:?} (seed {}); largest read \
         {largest_read} B ({big_reads} cases read >= 64 KiB at once), largest allocation \
         {largest_alloc} B; outcomes {outcomes:?}",
        t0.elapsed(),
        slowest.0,
        slowest.1
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed (replay one with WALKER_FUZZ_SEED=<seed>):\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn fuzz_config(default_cases: u64) -> (u64, u64) {
    match std::env::var("WALKER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => (1, seed),
        None => (
            std::env::var("WALKER_FUZZ_CASES")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(default_cases),
            0,
        ),
    }
}

#[test]
fn random_corruption_never_panics_and_stays_bounded() {
    let (cases, seed) = fuzz_config(2000);
    fuzz(cases, seed, false);
}

#[test]
fn random_corruption_with_pointers_near_the_top_of_the_address_space() {
    let (cases, seed) = fuzz_config(2000);
    fuzz(cases, seed, true);
}

// ---------------------------------------------------------------------------------------
// Memory reads per sample

/// Reads of one sample by the sampler (`StackSampler::sample`) of `threads` threads ×
/// `frames` frames (no shims), every frame with its own code object, one interpreter.
/// Derived from walker/mod.rs, code/mod.rs and sampler/mod.rs:
///
/// * main_interpreter: the head pointer, then `next` of each interpreter: 2;
/// * walk_all: the list head, then one read per thread state (its `next` link and every
///   field the walker needs): 1 + T; then in one batch for all threads the
///   `cframe->current_frame` links (3.11/3.12) and in another the used parts of their
///   current data-stack chunks (3.11+); per frame: ≤3.10 one read of the frame object's
///   fields; 3.11+ none (the frames are in the copied chunk);
/// * CodeReader::code, once per code object per tick: one header read; on a miss (cold
///   cache) also name (co_qualname 3.11+) and file name (3 reads each: length, state,
///   characters; 2.7: size, characters), the line table (size, contents), `co_code`'s size
///   (≤3.10), the bytecode and the symbols (with opcode capture); the very first miss
///   checks the type:
///   tp_name pointer + the C string = 2;
/// * with opcode capture on 3.11+: the live opcodes come with the code objects' own
///   reads (header and inline bytecode through the instructions executed); resolving
///   frames reads nothing (frame ids are cached per instruction).
fn expected_reads(l: &Layout, threads: u64, frames: u64, cold: bool, opcodes: bool) -> u64 {
    let b = |x: bool| x as u64;
    let interp = 2;
    let list = 1 + threads;
    let chunked = l.tstate_datastack_chunk.is_some() && l.frame_kind == FrameKind::Interpreter;
    let batches = b(l.cframe_current_frame.is_some()) + b(chunked);
    // With opcodes on 3.11+ the live opcodes come with the code objects' validation reads
    // (their inline bytecode is read with the header): no read of their own.
    // The top-frame pointer, the top frame's code object and its caller's instruction
    // read again after the frames (`Memory::read_late`; in a snapshot, at the end of the
    // tick's batch).
    let per_thread = 3;
    let per_frame_walk = b(!chunked);
    let per_string = match l.string_kind {
        StringKind::Unicode => 3,
        StringKind::Bytes => 2,
    };
    // With opcodes, a miss also reads the code object's symbols (its names tuple first:
    // the image has none, so that one read is all).
    let per_miss = 2 * per_string + 2 + b(l.code_code.is_some()) + 2 * b(opcodes);
    let per_frame_code = 1 + if cold { per_miss } else { 0 };
    // The first miss checks the type (2); the first sample also looks for thread names
    // (read again once a second): the image has no `sys.modules`, one read finds that.
    let type_check = if cold { 2 + 1 } else { 0 };
    interp
        + list
        + batches
        + threads * (per_thread + frames * (per_frame_walk + per_frame_code))
        + type_check
}

/// Cold (fresh sampler) and warm reads of one sample of 1 thread × 20 frames.
fn measure_reads(l: &Layout, opcodes: bool) -> (u64, u64) {
    let mut b = ImageBuilder::new(l);
    let codes: Vec<usize> = (0..20)
        .map(|i| {
            b.code(
                &format!("func_{i}"),
                &format!("/srv/app/mod_{i}.py"),
                10 * i + 1,
            )
        })
        .collect();
    let frames: Vec<(usize, u32)> = codes.iter().map(|&c| (c, (c % 4) as u32)).collect();
    b.thread(&frames);
    let img = b.build();
    let table = if opcodes {
        opcodes::table_for(l.major, l.minor, l.free_threaded)
    } else {
        None
    };
    let mem = CountingMemory::new(&img.mem);
    let mut sampler = StackSampler::new(img.walker(DEFAULT_MAX_DEPTH), table);
    let mut profile = Profile::new(Meta::default());
    assert_eq!(sampler.sample(&mem, &mut profile), vec![], "{}", ver(l));
    let data = profile.to_data();
    let got: Vec<(String, i32)> = data.stacks[0]
        .frames
        .iter()
        .rev()
        .map(|&i| {
            (
                data.frames[i as usize].function.clone(),
                data.frames[i as usize].line,
            )
        })
        .collect();
    let want: Vec<(String, i32)> = img.threads[0]
        .expected
        .iter()
        .map(|f| (f.function.clone(), f.line))
        .collect();
    assert_eq!(got, want, "{}", ver(l));
    let cold = mem.reads.get();
    mem.reset();
    assert_eq!(sampler.sample(&mem, &mut profile), vec![], "{}", ver(l));
    (cold, mem.reads.get())
}

#[test]
fn memory_reads_per_sample_match_the_formula() {
    // The numbers of the formula, written out, so a change to it is seen in review too.
    type Row = ((u8, u8), (u64, u64));
    let table: &[Row] = &[
        ((2, 7), (190, 47)),
        ((3, 6), (230, 47)),
        ((3, 7), (230, 47)),
        ((3, 8), (230, 47)),
        ((3, 9), (230, 47)),
        ((3, 10), (230, 47)),
        ((3, 11), (192, 29)),
        ((3, 12), (192, 29)),
        ((3, 13), (191, 28)),
        ((3, 14), (191, 28)),
        ((3, 15), (191, 28)),
    ];
    for l in all_layouts() {
        let (cold, warm) = measure_reads(l, false);
        println!(
            "reads per sample, 1 thread x 20 frames, Python {}: first sample (cold code cache) {cold}, \
             steady state {warm} ({:.1} per frame)",
            ver(l),
            warm as f64 / 20.0
        );
        assert_eq!(
            cold,
            expected_reads(l, 1, 20, true, false),
            "{} cold",
            ver(l)
        );
        assert_eq!(
            warm,
            expected_reads(l, 1, 20, false, false),
            "{} warm",
            ver(l)
        );
        if let Some((_, want)) = table.iter().find(|(v, _)| *v == (l.major, l.minor)) {
            assert_eq!((cold, warm), *want, "{}", ver(l));
        }
    }
}

#[test]
fn memory_reads_per_sample_with_opcode_capture_match_the_formula() {
    for l in all_layouts() {
        if opcodes::table_for(l.major, l.minor, l.free_threaded).is_none() {
            continue;
        }
        let (cold, warm) = measure_reads(l, true);
        println!(
            "reads per sample with --opcodes, 1 thread x 20 frames, Python {}: cold {cold}, warm {warm}",
            ver(l)
        );
        assert_eq!(
            cold,
            expected_reads(l, 1, 20, true, true),
            "{} cold",
            ver(l)
        );
        assert_eq!(
            warm,
            expected_reads(l, 1, 20, false, true),
            "{} warm",
            ver(l)
        );
    }
}

/// Never harm the target: nothing in the crate can write to another process. The
/// `Memory` trait has only reads, and no source file calls a system call that writes
/// another process's memory or runs code in it.
#[test]
fn no_write_path_to_the_target_exists() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src];
    let mut texts = Vec::new();
    while let Some(p) = files.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                files.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                texts.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    for (path, text) in &texts {
        for banned in [
            "process_vm_writev",
            "PTRACE_POKE",
            "ptrace::write",
            "PTRACE_SETREGS",
            "ptrace::setregs",
            "/mem\", O_RDWR",
            "OpenOptions::new().write(true).open(format!(\"/proc",
        ] {
            assert!(!text.contains(banned), "{} uses {banned}", path.display());
        }
    }
    let memory = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/process/memory.rs"),
    )
    .unwrap();
    let trait_body = &memory[memory.find("pub trait Memory").unwrap()..];
    let trait_body = &trait_body[..trait_body.find("\n}\n").unwrap()];
    let methods: Vec<&str> = trait_body
        .lines()
        .filter_map(|l| l.trim().strip_prefix("fn "))
        .collect();
    assert!(
        methods.iter().all(|m| m.starts_with("read")),
        "Memory has a non-read method: {methods:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Caches must never show a stale stack

/// The sampler caches code objects, frame ids per (code object, instruction, opcode) and
/// each thread's previous stack (its root side is reused). Between two samples of the
/// same sampler, the leaf frame moves to another line, then runs another function, then
/// a caller frame moves: each second sample must show the change, on every layout, with
/// and without opcode capture.
#[test]
fn a_frame_that_changes_between_samples_is_seen_changed() {
    for l in all_layouts() {
        for opcodes in [false, true] {
            let table = if opcodes {
                opcodes::table_for(l.major, l.minor, l.free_threaded)
            } else {
                None
            };
            let mut b = ImageBuilder::new(l);
            let leaf = b.code("leaf", "/srv/app/leaf.py", 10);
            let other = b.code("other", "/srv/app/other.py", 40);
            let mid = b.code("mid", "/srv/app/mid.py", 20);
            let root = b.code("root", "/srv/app/root.py", 30);
            b.thread(&[(leaf, 0), (mid, 1), (root, 2)]);
            let mut img = b.build();
            let mut pipe = Pipeline::new(img.walker(DEFAULT_MAX_DEPTH), table);
            let lines = |pipe: &mut Pipeline, img: &FakeImage| -> Vec<(String, i32)> {
                let t = ok_threads(pipe.pass(&img.mem));
                t[0].frames
                    .iter()
                    .map(|f| (f.function.clone(), f.line))
                    .collect()
            };
            let label = format!("{} opcodes={opcodes}", ver(l));
            let name = |c: &fake_image::CodeObj| {
                if l.code_qualname.is_some() {
                    c.spec.qualname.clone()
                } else {
                    c.spec.name.clone()
                }
            };
            let first = lines(&mut pipe, &img);
            assert_eq!(
                first,
                lines(&mut pipe, &img),
                "{label}: same image, same stack"
            );
            let frames = img.threads[0].py_frames();
            let (leaf_code, other_code) = (img.codes[leaf].clone(), img.codes[other].clone());
            // 1. The leaf moves from slot 0 to slot 2 of its function.
            set_slot(&mut img, frames[0], &leaf_code, 2);
            let second = lines(&mut pipe, &img);
            assert_eq!(
                second[0],
                (name(&leaf_code), leaf_code.line(2)),
                "{label}: the leaf's new line"
            );
            assert_eq!(second[1..], first[1..], "{label}: callers unchanged");
            // 2. The leaf frame now runs another function (a new call at the same address).
            let code_field = img.frame_code_addr(frames[0]);
            let old = img.read_u64(code_field);
            let tag = old & img.layout.frame_code_tag_mask as u64; // 3.14+ stack-ref tags
            img.write_u64(code_field, other_code.addr | tag);
            set_slot(&mut img, frames[0], &other_code, 1);
            let third = lines(&mut pipe, &img);
            assert_eq!(
                third[0],
                (name(&other_code), other_code.line(1)),
                "{label}: the leaf's new function"
            );
            // 3. A caller moves (the root side of the stack is reused when unchanged).
            let mid_code = img.codes[mid].clone();
            set_slot(&mut img, frames[1], &mid_code, 3);
            let fourth = lines(&mut pipe, &img);
            assert_eq!(
                fourth[1],
                (name(&mid_code), mid_code.line(3)),
                "{label}: the caller's new line"
            );
            assert_eq!(fourth[0], third[0], "{label}: leaf unchanged");
        }
    }
}

/// Point `frame` at line slot `slot` of `code` (the image's encoding: byte 4 * slot + 2).
fn set_slot(img: &mut FakeImage, frame: u64, code: &fake_image::CodeObj, slot: u32) {
    let l = img.layout.clone();
    let offset = 4 * slot as u64 + 2;
    let at = img.frame_instr_addr(frame);
    match l.frame_kind {
        FrameKind::Object => {
            let lasti = if (l.major, l.minor) >= (3, 10) {
                offset / 2
            } else {
                offset
            };
            img.write_u32(at, lasti as u32);
        }
        FrameKind::Interpreter => img.write_u64(at, code.code_start + offset),
    }
}
