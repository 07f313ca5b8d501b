//! Thread names (`threading.current_thread().name`) read from a live target's memory by
//! `pyprof::runtime::objects::thread_names`, for every interpreter available, and the same
//! reader over garbage memory (an empty map, never a panic).
//!
//! Run: `cargo test -j1 --test thread_names -- --nocapture` for the per-version table.

mod common;

use common::*;
use pyprof::process::{FakeMemory, LiveMemory, Memory, MemoryError};
use pyprof::runtime::layouts;
use pyprof::runtime::objects::thread_names;
use pyprof::walker::{RawThread, Walker};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// A `Memory` that counts the reads (system calls) it is asked for.
struct Counting<'a> {
    inner: &'a dyn Memory,
    reads: Cell<usize>,
}

impl Memory for Counting<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.reads.set(self.reads.get() + 1);
        self.inner.read(addr, buf)
    }

    fn read_scatter(&self, reqs: &[(u64, usize)], out: &mut [u8]) -> Vec<bool> {
        self.reads.set(self.reads.get() + 1);
        self.inner.read_scatter(reqs, out)
    }
}

/// What one interpreter gave: the names read, and what they should be.
struct Outcome {
    names: HashMap<u64, String>,
    expected: BTreeMap<u64, String>,
    walker_ids: Vec<u64>,
    reads: usize,
    elapsed: Duration,
}

fn attach_and_read(py: &Python) -> Result<Outcome, String> {
    let target = Target::spawn(py, "threads.py", &[]);
    // `name=ident` lines printed by the target before `ready`.
    let expected: BTreeMap<u64, String> = target
        .lines
        .iter()
        .filter_map(|l| {
            let (name, ident) = l.trim().rsplit_once('=')?;
            Some((ident.parse().ok()?, name.to_string()))
        })
        .collect();
    if expected.len() != 4 {
        return Err(format!("target printed {:?}", target.lines));
    }
    let mem = LiveMemory::new(target.pid);
    let rt = pyprof::runtime::discover(target.pid, &mem).map_err(|e| format!("discover: {e}"))?;
    let w = Walker::new(&rt, 1000);
    let interp = w
        .main_interpreter(&mem)
        .map_err(|e| format!("main_interpreter: {e}"))?;
    let tstates = w
        .thread_states(&mem, interp)
        .map_err(|e| format!("thread_states: {e}"))?;
    let mut walker_ids = Vec::new();
    for t in tstates {
        let mut raw = RawThread::default();
        w.walk_thread(&mem, t, &mut raw)
            .map_err(|e| format!("walk_thread: {e}"))?;
        walker_ids.push(raw.thread_id);
    }
    walker_ids.sort_unstable();
    let counting = Counting {
        inner: &mem,
        reads: Cell::new(0),
    };
    let start = Instant::now();
    let names = thread_names(&counting, &rt.layout, interp);
    let elapsed = start.elapsed();
    // Twice more: the result is stable (the sampler calls this on a timer).
    for _ in 0..2 {
        let again = thread_names(&mem, &rt.layout, interp);
        if again != names {
            return Err(format!("unstable: {names:?} then {again:?}"));
        }
    }
    Ok(Outcome {
        names,
        expected,
        walker_ids,
        reads: counting.reads.get(),
        elapsed,
    })
}

#[test]
fn thread_names_of_every_interpreter() {
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for py in pythons() {
        let outcome = match attach_and_read(&py) {
            Ok(o) => o,
            Err(e) => {
                table.push(format!("{:<12} ERROR {e}", py.label));
                failures.push(format!("{}: {e}", py.label));
                continue;
            }
        };
        let got: BTreeMap<u64, String> = outcome.names.clone().into_iter().collect();
        let mut problems = Vec::new();
        if got != outcome.expected {
            problems.push(format!("names {got:?}, expected {:?}", outcome.expected));
        }
        let expected_ids: Vec<u64> = outcome.expected.keys().copied().collect();
        if outcome.walker_ids != expected_ids {
            problems.push(format!(
                "walker thread ids {:?}, target idents {expected_ids:?}",
                outcome.walker_ids
            ));
        }
        let mut names: Vec<&str> = got.values().map(|s| s.as_str()).collect();
        names.sort_unstable();
        if names != ["MainThread", "worker-a", "worker-b", "worker-c"] {
            problems.push(format!("names {names:?}"));
        }
        table.push(format!(
            "{:<12} {:<4} {} reads, {:?}: {}",
            py.label,
            if problems.is_empty() { "OK" } else { "FAIL" },
            outcome.reads,
            outcome.elapsed,
            names.join(", ")
        ));
        if !problems.is_empty() {
            failures.push(format!("{}: {}", py.label, problems.join("; ")));
        }
        // Cheap enough to run once a second.
        if outcome.reads > 100 {
            failures.push(format!(
                "{}: {} reads for 4 threads",
                py.label, outcome.reads
            ));
        }
    }
    println!("thread names per interpreter:\n  {}", table.join("\n  "));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A small deterministic PRNG (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

const BASE: u64 = 0x10_0000;
const SIZE: usize = 1 << 16;

/// Garbage of a few flavours: random bytes; pointers back into the region (so every
/// pointer chase succeeds and lands on more garbage); small integers (sizes, counts);
/// all ones; a region that points to itself.
fn garbage(flavour: u32, rng: &mut Rng) -> Vec<u8> {
    let mut v = vec![0u8; SIZE];
    for chunk in v.chunks_exact_mut(8) {
        let r = rng.next();
        let word = match flavour {
            0 => r,
            1 => BASE + (r % SIZE as u64) / 8 * 8,
            2 => r % 64,
            3 => u64::MAX,
            4 => BASE,
            _ => match r % 4 {
                0 => BASE + (r >> 8) % SIZE as u64 / 8 * 8,
                1 => (r >> 8) % 40,
                2 => r >> 8,
                _ => 0,
            },
        };
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    v
}

#[test]
fn garbage_memory_gives_no_names_and_no_panic() {
    let mut all = Vec::new();
    for (major, minor) in std::iter::once((2u8, 7u8)).chain((6..=20).map(|m| (3u8, m))) {
        for ft in [false, true] {
            if let Some(l) = layouts::builtin(major, minor, ft) {
                if l.free_threaded == ft {
                    all.push(l);
                }
            }
        }
    }
    assert!(all.len() >= 9, "built-in layouts: {}", all.len());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut cases = 0;
    for l in &all {
        for flavour in 0..6 {
            for round in 0..20 {
                let mut mem = FakeMemory::new();
                mem.map(BASE, garbage(flavour, &mut rng));
                let interp = match round {
                    0 => 0,
                    1 => 8,
                    2 => u64::MAX - 7,
                    3 => BASE + SIZE as u64 - 8,
                    _ => BASE + (rng.next() % SIZE as u64) / 8 * 8,
                };
                let start = Instant::now();
                let r = catch_unwind(AssertUnwindSafe(|| thread_names(&mem, l, interp)));
                let names = r.unwrap_or_else(|_| {
                    panic!(
                        "{}.{} flavour {flavour} interp {interp:#x}: panicked",
                        l.major, l.minor
                    )
                });
                assert!(
                    names.is_empty(),
                    "{}.{} flavour {flavour}: names from garbage: {names:?}",
                    l.major,
                    l.minor
                );
                assert!(
                    start.elapsed() < Duration::from_secs(2),
                    "{}.{} flavour {flavour}: took {:?}",
                    l.major,
                    l.minor,
                    start.elapsed()
                );
                cases += 1;
            }
        }
    }
    // Nothing mapped at all.
    for l in &all {
        assert!(thread_names(&FakeMemory::new(), l, BASE).is_empty());
    }
    println!("{cases} garbage cases over {} layouts", all.len());
}

/// Names stored every way CPython keeps instance attributes (see the script), a thread not
/// started by `threading`, non-ASCII and long names: all read exactly.
#[test]
fn thread_name_variants_of_every_interpreter() {
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for py in pythons() {
        let target = Target::spawn(&py, "thread_name_variants.py", &[]);
        let expected: BTreeMap<u64, String> = target
            .lines
            .iter()
            .filter_map(|l| {
                let (name, ident) = l.rsplit_once('=')?;
                Some((ident.trim().parse().ok()?, name.to_string()))
            })
            .collect();
        let mem = LiveMemory::new(target.pid);
        let got: BTreeMap<u64, String> = match pyprof::runtime::discover(target.pid, &mem) {
            Ok(rt) => {
                let w = Walker::new(&rt, 1000);
                match w.main_interpreter(&mem) {
                    Ok(interp) => thread_names(&mem, &rt.layout, interp).into_iter().collect(),
                    Err(e) => {
                        failures.push(format!("{}: main_interpreter: {e}", py.label));
                        continue;
                    }
                }
            }
            Err(e) => {
                failures.push(format!("{}: discover: {e}", py.label));
                continue;
            }
        };
        let missing: Vec<&String> = expected
            .iter()
            .filter(|(k, v)| got.get(k) != Some(v))
            .map(|(_, v)| v)
            .collect();
        let ok = got == expected && expected.len() == 10;
        table.push(format!(
            "{:<12} {:<4} {}/{} names{}",
            py.label,
            if ok { "OK" } else { "FAIL" },
            expected.len() - missing.len(),
            expected.len(),
            if missing.is_empty() {
                String::new()
            } else {
                format!(", wrong or missing: {missing:?}")
            }
        ));
        if !ok {
            failures.push(format!("{}: got {got:?}, expected {expected:?}", py.label));
        }
    }
    println!(
        "thread name variants per interpreter:\n  {}",
        table.join("\n  ")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Records, page by page, what a reader touches in a live target, so the same object graph
/// can be replayed (and corrupted) from a `FakeMemory`.
struct Recorder<'a> {
    live: &'a dyn Memory,
    pages: std::cell::RefCell<BTreeMap<u64, Vec<u8>>>,
    /// The (address, length) of every successful read: where corruption matters.
    reads: std::cell::RefCell<Vec<(u64, usize)>>,
}

const PAGE: u64 = 4096;

impl Memory for Recorder<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let end = addr.saturating_add(buf.len() as u64);
        let mut page = addr & !(PAGE - 1);
        while page < end {
            if let std::collections::btree_map::Entry::Vacant(slot) =
                self.pages.borrow_mut().entry(page)
            {
                let mut p = vec![0u8; PAGE as usize];
                if self.live.read(page, &mut p).is_ok() {
                    slot.insert(p);
                }
            }
            page += PAGE;
        }
        self.live.read(addr, buf)?;
        if buf.len() >= 8 {
            self.reads.borrow_mut().push((addr, buf.len()));
        }
        Ok(())
    }
}

impl Recorder<'_> {
    /// The pages read, merged into contiguous regions.
    fn image(&self) -> (FakeMemory, Vec<(u64, usize)>) {
        let mut regions: Vec<(u64, Vec<u8>)> = Vec::new();
        for (&addr, data) in self.pages.borrow().iter() {
            match regions.last_mut() {
                Some((start, buf)) if *start + buf.len() as u64 == addr => {
                    buf.extend_from_slice(data)
                }
                _ => regions.push((addr, data.clone())),
            }
        }
        let spans = regions.iter().map(|(a, d)| (*a, d.len())).collect();
        let mut mem = FakeMemory::new();
        for (a, d) in regions {
            mem.map(a, d);
        }
        (mem, spans)
    }
}

/// The real object graph of each interpreter, recorded and replayed from a fake image, then
/// corrupted one word at a time (pointers into the image, small and huge numbers, random
/// bytes): never a panic, never slow; and the uncorrupted replay gives the live result.
#[test]
fn corrupted_recordings_of_real_targets_never_panic() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut summary = Vec::new();
    for py in pythons() {
        let target = Target::spawn(&py, "thread_name_variants.py", &[]);
        let live = LiveMemory::new(target.pid);
        let Ok(rt) = pyprof::runtime::discover(target.pid, &live) else {
            summary.push(format!("{}: discover failed (covered elsewhere)", py.label));
            continue;
        };
        let Ok(interp) = Walker::new(&rt, 1000).main_interpreter(&live) else {
            continue;
        };
        let rec = Recorder {
            live: &live,
            pages: Default::default(),
            reads: Default::default(),
        };
        let names = thread_names(&rec, &rt.layout, interp);
        drop(target);
        let (clean, spans) = rec.image();
        assert_eq!(
            thread_names(&clean, &rt.layout, interp),
            names,
            "{}: replay differs",
            py.label
        );
        let total: usize = spans.iter().map(|s| s.1).sum();
        let reads = rec.reads.borrow().clone();
        let mut partial = 0;
        let rounds = 1000;
        for _ in 0..rounds {
            let mut mem = clean.clone();
            for _ in 0..1 + rng.next() % 3 {
                // A word inside something the reader read.
                let (a, len) = reads[(rng.next() % reads.len() as u64) as usize];
                let addr = a + (rng.next() % len as u64) / 8 * 8;
                let (s2, len2) = spans[(rng.next() % spans.len() as u64) as usize];
                let word = match rng.next() % 6 {
                    0 => s2 + (rng.next() % len2 as u64) / 8 * 8,
                    1 => rng.next() % 64,
                    2 => u64::MAX - rng.next() % 16,
                    3 => rng.next(),
                    4 => 0,
                    _ => 0x0000_ffff_ffff_f000 + rng.next() % 4096,
                };
                mem.patch(addr, &word.to_le_bytes());
            }
            let start = Instant::now();
            let got = catch_unwind(AssertUnwindSafe(|| thread_names(&mem, &rt.layout, interp)))
                .unwrap_or_else(|_| panic!("{}: panicked on a corrupted recording", py.label));
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{}: took {:?}",
                py.label,
                start.elapsed()
            );
            if got != names {
                partial += 1;
            }
        }
        summary.push(format!(
            "{}: {} pages, {} reads recorded; {rounds} corruptions, {partial} changed the result",
            py.label,
            total / PAGE as usize,
            reads.len()
        ));
    }
    println!("{}", summary.join("\n"));
}

/// The object readers called directly on garbage (deeper than `thread_names` gets from a
/// garbage interpreter): no panic, bounded.
#[test]
fn object_readers_on_garbage_never_panic() {
    use pyprof::runtime::objects::Objects;
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for (major, minor) in std::iter::once((2u8, 7u8)).chain((6..=20).map(|m| (3u8, m))) {
        for ft in [false, true] {
            let Some(l) = layouts::builtin(major, minor, ft).filter(|l| l.free_threaded == ft)
            else {
                continue;
            };
            for flavour in 0..6 {
                let mut mem = FakeMemory::new();
                mem.map(BASE, garbage(flavour, &mut rng));
                let o = Objects::new(&mem, l);
                for _ in 0..200 {
                    let addr = match rng.next() % 4 {
                        0 => BASE + (rng.next() % SIZE as u64) / 8 * 8,
                        1 => BASE + SIZE as u64 - 8 * (1 + rng.next() % 8),
                        2 => rng.next(),
                        _ => u64::MAX - 7 - rng.next() % 64 * 8,
                    };
                    let r = catch_unwind(AssertUnwindSafe(|| {
                        let _ = o.dict_entries(addr);
                        let _ = o.dict_get_str(addr, "_name");
                        let _ = o.instance_attr(addr, "_name");
                        let _ = o.read_uint(addr);
                        let _ = o.read_str(addr);
                    }));
                    assert!(
                        r.is_ok(),
                        "{major}.{minor}{} flavour {flavour} at {addr:#x}: panicked",
                        if ft { "t" } else { "" }
                    );
                }
            }
        }
    }
}

/// A thousand threads: every one named, at a cost fit for a once-a-second refresh.
#[test]
fn a_thousand_threads_are_named_cheaply() {
    let mut failures = Vec::new();
    for py in pythons() {
        let target = Target::spawn(&py, "many_threads.py", &["1000"]);
        let mem = LiveMemory::new(target.pid);
        let rt = pyprof::runtime::discover(target.pid, &mem).expect("discover");
        let interp = Walker::new(&rt, 1000)
            .main_interpreter(&mem)
            .expect("interpreter");
        let counting = Counting {
            inner: &mem,
            reads: Cell::new(0),
        };
        let start = Instant::now();
        let cpu = thread_cpu();
        let names = thread_names(&counting, &rt.layout, interp);
        let cpu = thread_cpu() - cpu;
        let elapsed = start.elapsed();
        let reads = counting.reads.get();
        println!(
            "{:<12} {} names, {reads} reads, {elapsed:?} ({cpu:?} of CPU)",
            py.label,
            names.len(),
        );
        let workers = names.values().filter(|n| n.starts_with("Thread-")).count();
        if names.len() != 1001 || workers != 1000 {
            failures.push(format!(
                "{}: {} names, {workers} workers",
                py.label,
                names.len()
            ));
        }
        // A handful of reads per thread (the ident, the Thread object, its dict or values,
        // its name).
        if reads > 100 + 6 * 1001 {
            failures.push(format!("{}: {reads} reads", py.label));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
