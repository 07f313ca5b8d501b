//! `--native`: a thread's native (C, C++, Rust) stack, from its registers and a copy of its
//! stack, unwound with each mapped object's DWARF call-frame information and symbolized
//! with its symbols and DWARF line and inline tables.
//!
//! Unwinding is framehop's (the unwinder samply uses on Linux): it reads `.eh_frame` and
//! `.eh_frame_hdr` as they are, without building tables first, caches unwind rules by
//! address, and falls back to frame pointers only where an object has no CFI for an
//! address. Symbols and lines are addr2line's (gimli and object), which reads `.symtab`
//! or `.dynsym`, DWARF line tables and inlined subroutines, and demangles C++ and Rust.
//! Both are pure Rust, maintained, and read the files the target mapped: nothing is
//! written, nothing runs in the target.
//!
//! Each object is loaded once (its unwind sections copied, its symbolizer opened lazily,
//! at its first symbolized address) and kept until it is unmapped: the target's maps are
//! read again when an address falls outside every known object (a `dlopen`), at most
//! every [`REREAD_EVERY`].

use super::elf::ElfInfo;
use super::maps::{self, MapRange};
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The soonest the maps are read again for an address no known object holds.
pub const REREAD_EVERY: Duration = Duration::from_millis(50);
/// Most native frames unwound per stack.
pub const MAX_NATIVE_DEPTH: usize = 512;
/// Bytes of stack copied at each sample, from the stack pointer up (reads beyond it are
/// made one word at a time, and counted).
pub const STACK_COPY: usize = 64 * 1024;

/// The registers native unwinding starts from: instruction, stack and frame pointers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Regs {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
}

/// Reads one word of the stack being unwound (None: not readable).
pub type StackReader<'a> = dyn FnMut(u64) -> Option<u64> + 'a;

/// One native frame, symbolized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NativeFrame {
    /// The function (demangled), or `0xADDR` relative to the object when it has no symbol.
    pub function: String,
    /// The source file from DWARF, when the object has line tables for the address.
    pub file: Option<String>,
    pub line: u32,
    /// The object's file name (`libz.so.1`).
    pub object: String,
}

/// What one address symbolizes to: its frames, outermost first (inlined functions after
/// the function they are inlined into), and whether it is in the eval loop.
#[derive(Debug, Default)]
pub struct Symbolized {
    pub frames: Vec<NativeFrame>,
    /// The address is in the interpreter's eval loop (`_PyEval_EvalFrameDefault`, or 2.7's
    /// `PyEval_EvalFrameEx`): the Python frames it runs stand for it.
    pub eval: bool,
}

/// Whether `name` is a function of the eval loop whose C frame runs Python frames.
pub fn is_eval_loop(name: &str) -> bool {
    // gcc splits cold paths off as `_PyEval_EvalFrameDefault.cold`.
    let base = name.split('.').next().unwrap_or(name);
    base == "_PyEval_EvalFrameDefault" || base == "PyEval_EvalFrameEx"
}

/// Frames of the process's entry (below `main`): not part of any program's work.
pub fn is_process_entry(name: &str) -> bool {
    matches!(
        name,
        "_start" | "__libc_start_main" | "__libc_start_call_main"
    )
}

struct Object {
    start: u64,
    end: u64,
    /// The path as the target's maps show it.
    path: String,
    name: String,
    /// Where the file is opened from (`maps::target_file_paths`).
    open_path: String,
    bias: u64,
    /// Its separate debug file, where the target's root has one (`.build-id`, or
    /// `.gnu_debuglink`): symbols and lines of a stripped file (Debian's interpreters).
    debug_path: Option<String>,
    symbolizer: Option<Option<addr2line::Loader>>,
}

/// Where a file's separate debug file is, under the target's root (`/proc/PID/root`: the
/// chroot or container it runs in), as gdb and perf look for it: by build id, then by its
/// `.gnu_debuglink` name beside it, in `.debug/`, and under `/usr/lib/debug`.
fn debug_file(pid: i32, path: &str, elf: &ElfInfo) -> Option<String> {
    let root = format!("/proc/{pid}/root");
    let mut candidates = Vec::new();
    if let Some(id) = elf.build_id.as_deref().filter(|id| id.len() > 1) {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        candidates.push(format!(
            "{root}/usr/lib/debug/.build-id/{}/{}.debug",
            &hex[..2],
            &hex[2..]
        ));
    }
    if let Some(link) = &elf.debuglink {
        let dir = path.rsplit_once('/').map_or("", |d| d.0);
        candidates.push(format!("{root}{dir}/{link}"));
        candidates.push(format!("{root}{dir}/.debug/{link}"));
        candidates.push(format!("{root}/usr/lib/debug{dir}/{link}"));
    }
    candidates
        .into_iter()
        .find(|c| c.as_str() != format!("{root}{path}") && std::path::Path::new(c).is_file())
}

/// Counters of native unwinding, for the profile's metadata.
#[derive(Clone, Copy, Debug, Default)]
pub struct NativeStats {
    pub stacks: u64,
    pub frames: u64,
    /// Stacks whose unwinding stopped before the process's entry (an object without CFI
    /// for an address and no frame pointer, or unreadable stack).
    pub incomplete: u64,
    pub maps_reads: u64,
    pub objects: u64,
    /// Stack words read one at a time, beyond the copy.
    pub extra_reads: u64,
}

/// The native unwinder and symbolizer of one process.
pub struct NativeUnwinder {
    pid: i32,
    unwinder: UnwinderX86_64<Vec<u8>>,
    cache: CacheX86_64,
    /// Objects by start address.
    objects: Vec<Object>,
    read_at: Option<Instant>,
    symbols: HashMap<u64, Rc<Symbolized>>,
    pub stats: NativeStats,
}

impl NativeUnwinder {
    pub fn new(pid: i32) -> NativeUnwinder {
        let mut u = NativeUnwinder {
            pid,
            unwinder: UnwinderX86_64::new(),
            cache: CacheX86_64::new(),
            objects: Vec::new(),
            read_at: None,
            symbols: HashMap::new(),
            stats: NativeStats::default(),
        };
        u.refresh();
        u
    }

    fn find(&self, addr: u64) -> Option<usize> {
        let i = self.objects.partition_point(|o| o.start <= addr);
        let o = self.objects.get(i.checked_sub(1)?)?;
        (addr < o.end).then_some(i - 1)
    }

    /// Read the target's maps again: add objects newly mapped, drop those unmapped.
    fn refresh(&mut self) {
        self.read_at = Some(Instant::now());
        self.stats.maps_reads += 1;
        let Ok(all) = maps::read_maps(self.pid) else {
            return;
        };
        let mut by_path: HashMap<&str, Vec<&MapRange>> = HashMap::new();
        for m in &all {
            if !m.path.is_empty() && m.path.starts_with('/') {
                by_path.entry(m.path.as_str()).or_default().push(m);
            }
        }
        // Drop objects no longer mapped where they were.
        let before = self.objects.len();
        self.objects.retain(|o| {
            by_path.get(o.path.as_str()).is_some_and(|ms| {
                ms.iter()
                    .any(|m| m.executable && m.start >= o.start && m.end <= o.end)
            })
        });
        if self.objects.len() != before {
            // framehop has no way to drop one of several objects by path: start again.
            self.unwinder = UnwinderX86_64::new();
            self.symbols.clear();
            let kept = std::mem::take(&mut self.objects);
            for o in kept {
                self.add(o.path.clone(), &all);
            }
        }
        let mut paths: Vec<&str> = by_path
            .iter()
            .filter(|(_, ms)| ms.iter().any(|m| m.executable))
            .map(|(p, _)| *p)
            .collect();
        paths.sort_unstable();
        for path in paths {
            let exec = by_path[path].iter().find(|m| m.executable).copied();
            if exec.is_some_and(|m| self.find(m.start).is_none()) {
                self.add(path.to_string(), &all);
            }
        }
    }

    /// Load object `path` (its unwind sections) and add it.
    fn add(&mut self, path: String, all: &[MapRange]) {
        let file_maps: Vec<&MapRange> = all.iter().filter(|m| m.path == path).collect();
        let Some(exec) = file_maps.iter().find(|m| m.executable) else {
            return;
        };
        let (start, end) = (exec.start, exec.end);
        let clean = path.trim_end_matches(" (deleted)");
        // The file as the target sees it (its root: a container), as maps shows it (a
        // chroot), or the mapping itself.
        let Some((open_path, elf)) = maps::target_file_paths(self.pid, exec)
            .into_iter()
            .find_map(|p| Some((p.display().to_string(), ElfInfo::open(&p).ok()?)))
        else {
            return;
        };
        let Some(bias) = elf.load_bias(&file_maps) else {
            return;
        };
        let range = |name: &str| {
            elf.section(name)
                .map(|(a, s)| a..a.saturating_add(s))
                .filter(|r| !r.is_empty())
        };
        let data = |name: &str| elf.section_data(name).map(|b| b.to_vec());
        let info = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: range(".text"),
            text: data(".text"),
            got_svma: range(".got"),
            eh_frame_svma: range(".eh_frame"),
            eh_frame: data(".eh_frame"),
            eh_frame_hdr_svma: range(".eh_frame_hdr"),
            eh_frame_hdr: data(".eh_frame_hdr"),
            debug_frame: data(".debug_frame"),
            ..Default::default()
        };
        let name = clean.rsplit('/').next().unwrap_or(clean).to_string();
        let debug_path = debug_file(self.pid, clean, &elf);
        self.unwinder
            .add_module(Module::new(name.clone(), start..end, bias, info));
        let at = self.objects.partition_point(|o| o.start < start);
        self.objects.insert(
            at,
            Object {
                start,
                end,
                path,
                name,
                open_path,
                bias,
                debug_path,
                symbolizer: None,
            },
        );
        self.stats.objects += 1;
    }

    /// Unwind one thread whose registers are `ip`, `sp`, `bp` into `out` (leaf first; each
    /// entry is the address to symbolize: the instruction pointer, then each return
    /// address minus one, inside its call instruction). `read` reads one stack word.
    pub fn unwind(&mut self, regs: Regs, read: &mut StackReader<'_>, out: &mut Vec<u64>) {
        out.clear();
        if self.find(regs.ip).is_none() && self.stale() {
            self.refresh();
        }
        self.stats.stacks += 1;
        self.unwind_once(regs, read, out);
        // An address in no known object ends the unwinding: a library loaded since the
        // maps were read (dlopen). Read them again (at most every REREAD_EVERY), and
        // unwind again if that found it.
        if out.last().is_some_and(|&a| self.find(a).is_none()) && self.stale() {
            let before = self.objects.len();
            self.refresh();
            if self.objects.len() != before {
                self.unwind_once(regs, read, out);
            }
        }
        self.stats.frames += out.len() as u64;
    }

    fn stale(&self) -> bool {
        self.read_at.is_none_or(|t| t.elapsed() >= REREAD_EVERY)
    }

    fn unwind_once(&mut self, regs: Regs, read: &mut StackReader<'_>, out: &mut Vec<u64>) {
        out.clear();
        let mut read_stack = |a: u64| read(a).ok_or(());
        let mut frames = self.unwinder.iter_frames(
            regs.ip,
            UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp),
            &mut self.cache,
            &mut read_stack,
        );
        let mut complete = false;
        while out.len() < MAX_NATIVE_DEPTH {
            match frames.next() {
                Ok(Some(a)) => {
                    let at = match a {
                        FrameAddress::InstructionPointer(_) => a.address_for_lookup(),
                        FrameAddress::ReturnAddress(_) => a.address_for_lookup(),
                    };
                    out.push(at);
                }
                Ok(None) => {
                    complete = true;
                    break;
                }
                Err(_) => break,
            }
        }
        // A stack that ends in the process's entry, or cleanly, is whole.
        let reached_entry = out.last().is_some_and(|&a| {
            self.symbolize(a)
                .frames
                .iter()
                .any(|f| is_process_entry(&f.function))
        });
        if !complete && !reached_entry {
            self.stats.incomplete += 1;
        }
    }

    /// What `addr` symbolizes to (cached by address until the maps change).
    pub fn symbolize(&mut self, addr: u64) -> Rc<Symbolized> {
        if let Some(s) = self.symbols.get(&addr) {
            return s.clone();
        }
        let s = Rc::new(self.symbolize_uncached(addr));
        if self.symbols.len() > 200_000 {
            self.symbols.clear();
        }
        self.symbols.insert(addr, s.clone());
        s
    }

    fn symbolize_uncached(&mut self, addr: u64) -> Symbolized {
        let Some(i) = self.find(addr) else {
            return Symbolized {
                frames: vec![NativeFrame {
                    function: format!("0x{addr:x}"),
                    file: None,
                    line: 0,
                    object: "[unknown]".into(),
                }],
                eval: false,
            };
        };
        let o = &mut self.objects[i];
        let svma = addr.wrapping_sub(o.bias);
        let (open_path, debug_path) = (&o.open_path, &o.debug_path);
        let loader = o.symbolizer.get_or_insert_with(|| {
            debug_path
                .as_ref()
                .and_then(|d| addr2line::Loader::new(d).ok())
                .or_else(|| addr2line::Loader::new(open_path).ok())
        });
        let mut frames = Vec::new();
        if let Some(l) = loader.as_ref() {
            if let Ok(mut it) = l.find_frames(svma) {
                while let Ok(Some(f)) = it.next() {
                    let function = f
                        .function
                        .as_ref()
                        .and_then(|n| n.demangle().ok().map(|d| d.into_owned()));
                    let (file, line) = match &f.location {
                        Some(loc) => (loc.file.map(str::to_string), loc.line.unwrap_or(0)),
                        None => (None, 0),
                    };
                    frames.push((function, file, line));
                }
            }
            // No DWARF for it: the symbol table (.symtab, else .dynsym).
            if frames.iter().all(|f| f.0.is_none()) {
                let sym = l
                    .find_symbol(svma)
                    .map(|n| addr2line::demangle_auto(n.into(), None).into_owned());
                let (file, line) = frames.first().map_or((None, 0), |f| (f.1.clone(), f.2));
                frames = vec![(sym, file, line)];
            }
        }
        if frames.is_empty() {
            frames.push((None, None, 0));
        }
        // addr2line gives the innermost (inlined) function first.
        frames.reverse();
        let object = o.name.clone();
        let frames: Vec<NativeFrame> = frames
            .into_iter()
            .map(|(function, file, line)| NativeFrame {
                function: function.unwrap_or_else(|| format!("0x{svma:x}")),
                file,
                line,
                object: object.clone(),
            })
            .collect();
        let eval = frames.first().is_some_and(|f| is_eval_loop(&f.function));
        Symbolized { frames, eval }
    }
}

/// One native address of a stack, as [`interleave`] takes it: its frames (outermost
/// first, in whatever form the caller keeps frames), whether it is in the eval loop, and
/// whether it is the program's `main` (what was unwound root side of it only starts the
/// process: `_start`, `__libc_start_main`, named by address in a stripped libc).
pub struct NativeAt<'a, T> {
    pub frames: &'a [T],
    pub eval: bool,
    pub main: bool,
}

impl Symbolized {
    /// The frames to show: not those of the process's entry (`_start`, …).
    pub fn shown(&self) -> impl Iterator<Item = &NativeFrame> {
        self.frames
            .iter()
            .filter(|f| !is_process_entry(&f.function))
    }

    /// Whether these frames are the program's (or the interpreter's) `main`.
    pub fn is_main(&self) -> bool {
        self.frames
            .iter()
            .any(|f| matches!(f.function.as_str(), "main" | "Py_BytesMain" | "Py_Main"))
    }
}

/// Interleave a thread's Python frames with its native stack, both leaf first: each
/// eval-loop address is replaced by the Python frames of one C call of the eval loop
/// (`groups`: how many frames each call runs, leaf first), matched from the leaf. Returns
/// the merged stack, leaf first, and whether the two matched one for one (else the Python
/// frames left over are kept on the root side, and eval-loop addresses left over are
/// dropped). `None` when `groups` does not count `python`.
pub fn interleave<T: Clone>(
    python: &[T],
    groups: &[usize],
    native: &[NativeAt<'_, T>],
) -> Option<(Vec<T>, bool)> {
    if groups.iter().sum::<usize>() != python.len() {
        return None;
    }
    let mut out: Vec<T> = Vec::with_capacity(python.len() + native.len());
    let (mut g, mut at) = (0, 0);
    let mut extra_eval = false;
    let mut main_at = None;
    for n in native {
        if n.main {
            main_at = Some(out.len() + n.frames.len());
        }
        if n.eval {
            match groups.get(g) {
                Some(&k) => {
                    out.extend_from_slice(&python[at..at + k]);
                    at += k;
                    g += 1;
                }
                None => extra_eval = true,
            }
        } else {
            out.extend(n.frames.iter().rev().cloned());
        }
    }
    let matched = at == python.len() && !extra_eval;
    if at == python.len() {
        if let Some(m) = main_at {
            out.truncate(m);
        }
    }
    out.extend_from_slice(&python[at..]);
    Some((out, matched))
}

/// A copy of the top of a paused thread's stack, read in one system call, and single
/// words beyond it read as needed (counted).
pub struct StackCopy {
    base: u64,
    bytes: Vec<u8>,
    pid: i32,
    pub reads: u64,
}

impl StackCopy {
    /// Copy up to [`STACK_COPY`] bytes of thread `tid`'s stack from `sp` (fewer where the
    /// mapping ends).
    pub fn read(pid: i32, sp: u64) -> StackCopy {
        let mut bytes = vec![0u8; STACK_COPY];
        let n = read_remote(pid, sp, &mut bytes);
        bytes.truncate(n);
        StackCopy {
            base: sp,
            bytes,
            pid,
            reads: 1,
        }
    }

    /// The stack word at `addr`.
    pub fn word(&mut self, addr: u64) -> Option<u64> {
        if let Some(off) = addr.checked_sub(self.base) {
            let off = off as usize;
            if let Some(b) = self.bytes.get(off..off.checked_add(8)?) {
                return Some(u64::from_le_bytes(b.try_into().ok()?));
            }
        }
        let mut b = [0u8; 8];
        self.reads += 1;
        (read_remote(self.pid, addr, &mut b) == 8).then(|| u64::from_le_bytes(b))
    }
}

/// Read what can be read of `buf.len()` bytes at `addr` in process `pid` (one
/// `process_vm_readv`; a read that crosses into unmapped memory stops there).
fn read_remote(pid: i32, addr: u64, buf: &mut [u8]) -> usize {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`, which outlives the call; the remote side is only
    // read by the kernel, which checks it.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if n > 0 {
        return n as usize;
    }
    // The copy may start in a mapping shorter than the buffer: read up to its end.
    let page_end = (addr | 0xfff).wrapping_add(1);
    let short = (page_end.wrapping_sub(addr) as usize).min(buf.len());
    if short < buf.len() && short > 0 {
        return read_remote(pid, addr, &mut buf[..short]);
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_frames_replace_eval_loop_frames_from_the_leaf() {
        let at = |frames: &'static [&'static str], eval: bool, main: bool| NativeAt {
            frames,
            eval,
            main,
        };
        // Leaf first: spin (C) ← leaf (Python) ← call_back (C) ← outer, <module> (one
        // eval call running both) ← main ← an address below main.
        let native = [
            at(&["spin"], false, false),
            at(&[], true, false),
            at(&["call_back"], false, false),
            at(&[], true, false),
            at(&["main"], false, true),
            at(&["0x29fb9"], false, false),
        ];
        let python = ["leaf", "outer", "<module>"];
        let (out, matched) = interleave(&python, &[1, 2], &native).unwrap();
        assert!(matched);
        assert_eq!(
            out,
            ["spin", "leaf", "call_back", "outer", "<module>", "main"]
        );
        // Unwinding that stopped early: the Python frames left over stay, root side.
        let (out, matched) = interleave(&python, &[1, 2], &native[..2]).unwrap();
        assert!(!matched);
        assert_eq!(out, ["spin", "leaf", "outer", "<module>"]);
        // Inlined frames come outermost first and are shown innermost first, leaf first.
        let inl = [
            at(&["outer_c", "inlined_c"], false, false),
            at(&[], true, false),
        ];
        let (out, _) = interleave(&["f"], &[1], &inl).unwrap();
        assert_eq!(out, ["inlined_c", "outer_c", "f"]);
        assert!(
            interleave(&python, &[1], &native).is_none(),
            "groups must count every frame"
        );
    }

    #[test]
    fn eval_loop_names() {
        assert!(is_eval_loop("_PyEval_EvalFrameDefault"));
        assert!(is_eval_loop("_PyEval_EvalFrameDefault.cold"));
        assert!(is_eval_loop("PyEval_EvalFrameEx"));
        assert!(!is_eval_loop("_PyEval_Vector"));
        assert!(!is_eval_loop("PyEval_EvalCode"));
    }

    /// This test process's own stack, unwound from a copy taken here: the frames of the
    /// test harness must be found, with this function among them.
    #[test]
    #[inline(never)]
    fn unwinds_and_symbolizes_this_process() {
        let pid = std::process::id() as i32;
        let mut u = NativeUnwinder::new(pid);
        let (ip, sp, bp): (u64, u64, u64);
        // SAFETY: reads three registers, touches no memory.
        unsafe {
            std::arch::asm!("lea {0}, [rip]", "mov {1}, rsp", "mov {2}, rbp",
                out(reg) ip, out(reg) sp, out(reg) bp);
        }
        let mut copy = StackCopy::read(pid, sp);
        let mut out = Vec::new();
        u.unwind(Regs { ip, sp, bp }, &mut |a| copy.word(a), &mut out);
        assert!(out.len() > 3, "unwound {} frames", out.len());
        let names: Vec<String> = out
            .iter()
            .flat_map(|&a| {
                u.symbolize(a)
                    .frames
                    .iter()
                    .map(|f| f.function.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            names
                .iter()
                .any(|n| n.contains("unwinds_and_symbolizes_this_process")),
            "{names:?}"
        );
        // The test thread began in libc (`start_thread`, `clone3`: in no symbol table of a
        // stripped libc, so named by address).
        let root = u.symbolize(*out.last().unwrap());
        assert!(
            root.frames[0].object.starts_with("libc"),
            "{:?}",
            root.frames
        );
    }
}
