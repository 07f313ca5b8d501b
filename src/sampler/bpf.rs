//! The bpf sampler: a CPU-clock perf event on every CPU runs `bpf/pyprof.bpf.c` in the
//! interrupted thread's context. If the thread belongs to a target, the program walks
//! its Python frames there and then (the thread cannot change its own stack while the
//! program runs, so the sample is consistent, and nothing is stopped) and pushes the raw
//! frames to a ring buffer, which this module drains into the same `RawThread`s the
//! other samplers produce.
//!
//! Why per-CPU events with a pid filter rather than one event per thread: threads and
//! child processes that start later are covered without opening anything for them (a
//! new child is one map entry), and 1,000 threads cost 2 file descriptors, not 1,000.
//! The price is that the program also runs, for one map lookup, when another process is
//! on the CPU.
//!
//! Versions are data here too: the program reads the offsets of the target's `Layout`
//! from the `configs` map. Userspace tells it which PyThreadState belongs to which OS
//! thread (`threads` map), from the interpreter's thread list.

use crate::runtime::layout::{FrameKind, Layout};
use crate::walker::{RawFrame, RawThread};

/// Most frames the kernel side copies per sample (`MAX_FRAMES` in the C program).
pub const MAX_FRAMES: usize = 10_000;

/// What the kernel side needs to walk one target (`struct config` in the C program).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BpfConfig {
    pub gil_locked: u64,
    pub gil_holder: u64,
    pub code_tag_mask: u64,
    pub frame_kind: u32,
    pub tstate_frame: u32,
    pub cframe_current: i32,
    pub frame_back: u32,
    pub frame_code: u32,
    pub frame_instr: u32,
    pub frame_owner: i32,
    pub owner_cstack: i32,
    pub owner_interp: i32,
    pub max_depth: u32,
    pub opcodes: u32,
    pub frame_tlbc: i32,
    pub tstate_head: u64,
    pub tstate_next: u32,
    pub tstate_thread_id: u32,
    pub task_pthread: i32,
    pub max_threads: u32,
    pub task_mm: i32,
    pub task_flags: i32,
    pub span_start: u32,
    pub span_len: u32,
    pub user_ip: u32,
    pub native_stack: u32,
    pub frame_is_entry: i32,
    pub pad: u32,
}

/// Where x86-64's `struct pt_regs` keeps `ip`, `sp` and `bp` (`PT_REGS_*` in the BPF
/// program).
pub const PT_REGS_IP: u64 = 128;
pub const PT_REGS_SP: u64 = 152;
pub const PT_REGS_BP: u64 = 32;
/// `--native`: the user stack copied with each sample (`STACK_MAX`).
pub const STACK_MAX: usize = 32768;
/// A frame's `owner` with this bit: the root-most frame of one C call of the eval loop.
pub const OWNER_ENTRY: u32 = 0x100;

impl BpfConfig {
    /// The walk of `layout`, with the GIL's `locked`/`last_holder` addresses when known,
    /// and for finding new threads in the kernel the address of the interpreter's thread
    /// list head and the offset of `pthread_self()` in the kernel's task struct.
    pub fn new(
        layout: &Layout,
        gil: Option<(u64, u64)>,
        max_depth: usize,
        opcodes: bool,
        native: bool,
        tstate_head: u64,
        task: crate::process::btf::TaskOffsets,
    ) -> Self {
        let opt = |v: Option<u32>| v.map_or(-1, |v| v as i32);
        // The part of a frame that holds every field read: one read per frame.
        let mut fields = vec![
            (layout.frame_back, 8),
            (layout.frame_code, 8),
            (layout.frame_instr, 8),
        ];
        fields.extend(layout.frame_owner.map(|o| (o, 1)));
        fields.extend(layout.frame_is_entry.map(|o| (o, 1)));
        fields.extend(layout.frame_tlbc_index.map(|o| (o, 4)));
        let lo = fields.iter().map(|f| f.0).min().unwrap_or(0);
        let hi = fields.iter().map(|f| f.0 + f.1).max().unwrap_or(0);
        // The C side reads 8 bytes at the back/code/instr offsets and bounds them.
        let span = (lo, (hi - lo).max(8).next_multiple_of(8));
        BpfConfig {
            gil_locked: gil.map_or(0, |g| g.0),
            gil_holder: gil.map_or(0, |g| g.1),
            code_tag_mask: layout.frame_code_tag_mask as u64,
            frame_kind: match layout.frame_kind {
                FrameKind::Object => 0,
                FrameKind::Interpreter => 1,
            },
            tstate_frame: layout.tstate_frame,
            cframe_current: opt(layout.cframe_current_frame),
            frame_back: layout.frame_back,
            frame_code: layout.frame_code,
            frame_instr: layout.frame_instr,
            frame_owner: opt(layout.frame_owner),
            owner_cstack: layout.owner_cstack.map_or(-1, |o| o as i32),
            owner_interp: layout.owner_interpreter.map_or(-1, |o| o as i32),
            max_depth: max_depth.clamp(1, MAX_FRAMES) as u32,
            opcodes: opcodes as u32,
            frame_tlbc: opt(layout.frame_tlbc_index),
            tstate_head,
            tstate_next: layout.tstate_next,
            tstate_thread_id: layout.tstate_thread_id,
            task_pthread: task.pthread.map_or(-1, |o| o as i32),
            max_threads: 4096,
            task_mm: task.mm.map_or(-1, |o| o as i32),
            task_flags: task.flags.map_or(-1, |o| o as i32),
            span_start: span.0,
            span_len: span.1,
            // With opcodes, where the thread was (the interpreter or native code it
            // called), when the kernel's pt_regs is as the program reads it.
            user_ip: ((opcodes || native) && task.regs_ip == Some(PT_REGS_IP)) as u32,
            // --native: the user stack and the registers to unwind it from, when pt_regs
            // is as the program reads it.
            native_stack: if native
                && task.regs_ip == Some(PT_REGS_IP)
                && task.regs_sp == Some(PT_REGS_SP)
                && task.regs_bp == Some(PT_REGS_BP)
            {
                STACK_MAX as u32
            } else {
                0
            },
            frame_is_entry: opt(layout.frame_is_entry),
            pad: 0,
        }
    }
}

/// One sample's header (`struct header`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BpfHeader {
    pub ktime: u64,
    pub tstate: u64,
    pub pid: u32,
    pub tid: u32,
    pub nframes: u32,
    pub flags: u32,
    pub fault_addr: u64,
    pub cursor: u64,
    /// The thread's user instruction pointer at the event (0: not read).
    pub user_ip: u64,
    /// `--native`: its stack and frame pointers.
    pub user_sp: u64,
    pub user_bp: u64,
}

/// One frame (`struct frame`). Without opcodes the kernel sends `struct frame_compact`
/// (FLAG_COMPACT): the same fields without `window`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BpfFrame {
    pub code: u64,
    pub instr: u64,
    pub frame: u64,
    pub owner: u32,
    pub tlbc_index: u32,
    /// Bytes `[instr - 14, instr + 2)` of the executing bytecode (with opcodes, 3.11+).
    pub window: [u8; 16],
}

/// The size of `struct frame_compact`: a `BpfFrame` up to its window.
pub const COMPACT_FRAME: usize = 32;

pub const FLAG_TRUNCATED: u32 = 1;
pub const FLAG_HOLDS_GIL: u32 = 2;
pub const FLAG_UNKNOWN_THREAD: u32 = 4;
pub const FLAG_READ_ERROR: u32 = 8;
/// The thread is not in the interpreter's thread list (starting, ending, or a thread of
/// the process that does not run Python): no sample, and no failure.
pub const FLAG_NOT_PYTHON: u32 = 16;
/// The frames are `struct frame_compact` (no opcode windows).
pub const FLAG_COMPACT: u32 = 32;
/// `--native`: a record of user stack bytes (`struct stack_copy`), sent just before the
/// sample of the same thread and instant.
pub const FLAG_STACK: u32 = 64;

/// Kernel-side counters (`C_*` in the C program).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BpfCounters {
    /// Perf events that fired in a target thread.
    pub events: u64,
    /// Samples pushed to the ring buffer.
    pub emitted: u64,
    /// Samples lost because the ring buffer was full.
    pub ringbuf_full: u64,
    /// Events in a thread not yet in the thread map.
    pub unknown_thread: u64,
    /// Samples cut short by a failed read.
    pub read_errors: u64,
}

/// A sample as drained from the ring buffer.
#[derive(Clone, Debug, Default)]
pub struct BpfSample {
    pub pid: i32,
    pub tid: u32,
    pub ktime: u64,
    pub flags: u32,
    pub fault_addr: u64,
    /// The stack, leaf first (tstate and frames; ids are filled in by the session).
    pub raw: RawThread,
    /// Per frame, the bytes around its instruction (with opcodes).
    pub windows: Vec<[u8; 16]>,
    /// `--native`: the thread's user registers (ip, sp, bp) and a copy of its stack
    /// (where the copy starts, its bytes), taken in the same kernel event.
    pub native: Option<NativeCopy>,
}

/// `--native`: what the kernel copied to unwind a thread's native stack.
#[derive(Clone, Debug, Default)]
pub struct NativeCopy {
    pub ktime: u64,
    pub tid: u32,
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    pub base: u64,
    pub bytes: Vec<u8>,
}

impl NativeCopy {
    /// The stack word at `addr`, if the copy holds it.
    pub fn word(&self, addr: u64) -> Option<u64> {
        let off = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        let b = self.bytes.get(off..off.checked_add(8)?)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    /// Parse a `FLAG_STACK` record into `self` (false if it is not one, or short).
    pub fn parse_into(&mut self, bytes: &[u8]) -> bool {
        let hlen = std::mem::size_of::<BpfHeader>();
        let Some(h) = bytes.get(..hlen).and_then(read_pod::<BpfHeader>) else {
            return false;
        };
        if h.flags & FLAG_STACK == 0 {
            return false;
        }
        let n = (h.nframes as usize).min(STACK_MAX);
        let Some(body) = bytes.get(hlen..hlen + n) else {
            return false;
        };
        self.ktime = h.ktime;
        self.tid = h.tid;
        self.ip = h.user_ip;
        self.sp = h.user_sp;
        self.bp = h.user_bp;
        self.base = h.fault_addr;
        self.bytes.clear();
        self.bytes.extend_from_slice(body);
        true
    }
}

impl BpfSample {
    /// The live opcode of frame `i` at byte `at` of the target (from the copied window).
    pub fn opcode_at(&self, i: usize, at: u64) -> Option<u8> {
        window_opcode(&self.windows, &self.raw.frames, i, at)
    }
}

/// The live opcode of frame `i` of `frames` at byte `at` of the target, from the windows
/// copied with them.
pub fn window_opcode(windows: &[[u8; 16]], frames: &[RawFrame], i: usize, at: u64) -> Option<u8> {
    let f = frames.get(i)?;
    let start = f.instr.checked_sub(14)?;
    let off = at.checked_sub(start)? as usize;
    windows.get(i)?.get(off).copied()
}

/// Parse one ring-buffer record (header, then `nframes` frames).
pub fn parse_record(bytes: &[u8]) -> Option<BpfSample> {
    let mut s = BpfSample::default();
    parse_record_into(bytes, &mut s).then_some(s)
}

/// [`parse_record`] into `s`, reusing its buffers (a deep stack is tens of KB a sample:
/// allocating them anew each time costs page faults). False when `bytes` is short.
pub fn parse_record_into(bytes: &[u8], s: &mut BpfSample) -> bool {
    let hlen = std::mem::size_of::<BpfHeader>();
    let Some(h) = bytes.get(..hlen).and_then(read_pod::<BpfHeader>) else {
        return false;
    };
    let compact = h.flags & FLAG_COMPACT != 0;
    let flen = if compact {
        COMPACT_FRAME
    } else {
        std::mem::size_of::<BpfFrame>()
    };
    let n = (h.nframes as usize).min(MAX_FRAMES);
    let Some(body) = bytes.get(hlen..hlen + n * flen) else {
        return false;
    };
    s.pid = h.pid as i32;
    s.tid = h.tid;
    s.ktime = h.ktime;
    s.flags = h.flags;
    s.fault_addr = h.fault_addr;
    s.raw.tstate = h.tstate;
    s.raw.thread_id = 0;
    s.raw.native_id = None;
    s.raw.truncated = h.flags & FLAG_TRUNCATED != 0;
    s.raw.ip = (h.user_ip != 0).then_some(h.user_ip);
    s.raw.frames.clear();
    s.raw.frames.reserve(n);
    s.windows.clear();
    let u64_at = |b: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[at..at + 8]);
        u64::from_ne_bytes(w)
    };
    let u32_at = |b: &[u8], at: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&b[at..at + 4]);
        u32::from_ne_bytes(w)
    };
    s.raw
        .frames
        .extend(body.chunks_exact(flen).map(|f| RawFrame {
            code: u64_at(f, 0),
            instr: u64_at(f, 8),
            frame: u64_at(f, 16),
            owner: u32_at(f, 24) as u8,
            tlbc_index: u32_at(f, 28),
            bytecode: 0,
            entry: u32_at(f, 24) & OWNER_ENTRY != 0,
        }));
    if !compact {
        s.windows.extend(body.chunks_exact(flen).map(|f| {
            let mut w = [0u8; 16];
            w.copy_from_slice(&f[COMPACT_FRAME..COMPACT_FRAME + 16]);
            w
        }));
    }
    true
}

fn read_pod<T: Copy + Default>(b: &[u8]) -> Option<T> {
    if b.len() < std::mem::size_of::<T>() {
        return None;
    }
    let mut v = T::default();
    // SAFETY: T is a #[repr(C)] struct of plain integers (every bit pattern is valid),
    // and `b` holds at least size_of::<T>() bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            b.as_ptr(),
            &mut v as *mut T as *mut u8,
            std::mem::size_of::<T>(),
        );
    }
    Some(v)
}

/// The kernel's sampling clock for a rate: the timer's frequency, and the program's
/// gate (see `gate_mean` in pyprof.bpf.c). The timer fires `grid` times per mean
/// interval (up to 4, keeping it at or under MAX_TIMER_HZ): the gaps between samples
/// are drawn among `grid` fires, uniform over [interval/2, 3·interval/2 - a fire's
/// period]; at high rates (grid 1) every fire samples, at a dithered period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    pub timer_hz: f64,
    pub gate_mean: u64,
    pub gate_spread: u64,
}

pub const MAX_TIMER_HZ: f64 = 5000.0;

impl Clock {
    pub fn of(rate_hz: f64) -> Clock {
        let grid = (MAX_TIMER_HZ / rate_hz).floor().clamp(1.0, 4.0);
        let interval = 1e9 / rate_hz;
        let fire = interval / grid;
        if grid < 2.0 {
            return Clock {
                timer_hz: rate_hz,
                gate_mean: 0,
                gate_spread: 0,
            };
        }
        Clock {
            timer_hz: rate_hz * grid,
            gate_mean: (interval - fire / 2.0).round() as u64,
            gate_spread: ((interval - fire) / 2.0).round() as u64,
        }
    }
}

#[cfg(pyprof_bpf)]
mod imp {
    use super::*;
    use crate::sampler::Dither;
    use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
    use aya::programs::PerfEvent;
    use aya::{Ebpf, EbpfLoader, Pod};
    use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
    use std::time::{Duration, Instant};

    // SAFETY: plain #[repr(C)] integer structs, as the C program lays them out.
    unsafe impl Pod for BpfConfig {}

    /// The compiled program, aligned as the ELF parser needs (include_bytes! is not).
    #[repr(C, align(32))]
    struct Aligned<T: ?Sized>(T);
    static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(env!("PYPROF_BPF_OBJ")));

    /// The loaded program, its perf events and maps.
    pub struct BpfSampler {
        ebpf: Ebpf,
        /// System calls made on the maps (thread and target updates).
        pub syscalls: u64,
        configs: BpfHashMap<MapData, u32, BpfConfig>,
        threads: BpfHashMap<MapData, u32, u64>,
        counters: PerCpuArray<MapData, u64>,
        ring: RingBuf<MapData>,
        /// The buffers samples are parsed into, reused.
        parsed: BpfSample,
        /// `--native`: the buffer of the last stack copy (reused).
        stack_copy: Option<NativeCopy>,
        /// The CPU-clock perf events the program runs on, one per CPU.
        timers: Vec<OwnedFd>,
        timer_hz: f64,
        dither: Dither,
        next_dither: Instant,
    }

    /// Periods per dithering block (and at least DITHER_MIN_BLOCK).
    const DITHER_PERIODS: f64 = 128.0;
    /// (Moving a timer's period is an IPI to its CPU, costly in a virtual machine: a
    /// block is long enough that this costs the profiler next to nothing.)
    const DITHER_MIN_BLOCK: Duration = Duration::from_millis(250);

    fn dither_block(rate_hz: f64) -> Duration {
        Duration::from_secs_f64(DITHER_PERIODS / rate_hz).max(DITHER_MIN_BLOCK)
    }

    /// How far a timer's frequency is moved from its mean, either way, once per block.
    const TIMER_DITHER: f64 = 0.125;

    /// A period in ns around the rate's: its frequency uniform within ±TIMER_DITHER of
    /// the rate, so that the mean rate is the rate.
    fn dithered_period(rate_hz: f64, d: &mut Dither) -> u64 {
        let f = rate_hz * (1.0 + TIMER_DITHER * d.next_signed());
        (1e9 / f).round().max(10_000.0) as u64
    }

    // <linux/perf_event.h>: _IO('$', 0), _IOW('$', 4, u64), _IOW('$', 8, u32).
    const PERF_EVENT_IOC_ENABLE: u64 = 0x2400;
    const PERF_EVENT_IOC_PERIOD: u64 = (1 << 30) | (8 << 16) | 0x2404;
    const PERF_EVENT_IOC_SET_BPF: u64 = (1 << 30) | (4 << 16) | 0x2408;
    const PERF_TYPE_SOFTWARE: u32 = 1;
    const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

    /// `struct perf_event_attr` as far as PERF_ATTR_SIZE_VER0 (64 bytes): the fields
    /// set here, then zeros (the flags: `disabled` is bit 0).
    #[repr(C)]
    #[derive(Default)]
    struct PerfEventAttr {
        type_: u32,
        size: u32,
        config: u64,
        sample_period: u64,
        sample_type: u64,
        read_format: u64,
        flags: u64,
        wakeup_events: u32,
        bp_type: u32,
        bp_addr: u64,
    }

    /// A CPU-clock event on `cpu` (every process) with `period` ns, running program
    /// `prog_fd` at each of its samples.
    fn cpu_clock_event(cpu: u32, period: u64, prog_fd: i32) -> Result<OwnedFd, std::io::Error> {
        let attr = PerfEventAttr {
            type_: PERF_TYPE_SOFTWARE,
            size: std::mem::size_of::<PerfEventAttr>() as u32,
            config: PERF_COUNT_SW_CPU_CLOCK,
            sample_period: period,
            flags: 1, // disabled until the program is attached
            ..Default::default()
        };
        // SAFETY: perf_event_open reads `attr` (its size is in it); the fd returned is
        // new and ours.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const PerfEventAttr,
                -1 as libc::pid_t,
                cpu as libc::c_int,
                -1 as libc::c_int,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by the kernel and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: these ioctls take an int argument (a program fd, or none).
        let ok = unsafe {
            libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_SET_BPF as _, prog_fd) == 0
                && libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_ENABLE as _, 0) == 0
        };
        if !ok {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    }

    impl BpfSampler {
        /// Load the program and start a CPU-clock event at `rate_hz` on every CPU.
        /// The error is one line saying why bpf cannot run here.
        pub fn open(rate_hz: f64) -> Result<BpfSampler, String> {
            let cpus = aya::util::online_cpus().map_err(|(what, e)| format!("{what}: {e}"))?;
            let possible = aya::util::nr_cpus().map_err(|(what, e)| format!("{what}: {e}"))?;
            let clock = Clock::of(rate_hz);
            let mut ebpf = EbpfLoader::new()
                .set_max_entries("scratch", possible as u32)
                .set_max_entries("stacks", possible as u32)
                .set_global("gate_mean", &clock.gate_mean, true)
                .set_global("gate_spread", &clock.gate_spread, true)
                .load(&OBJECT.0)
                .map_err(|e| explain(&format!("{e}"), &e))?;
            let prog: &mut PerfEvent = ebpf
                .program_mut("pyprof_sample")
                .ok_or("the program pyprof_sample is missing from the object")?
                .try_into()
                .map_err(|e| format!("{e}"))?;
            prog.load().map_err(|e| explain_load(&e))?;
            // The CPU-clock events are ours (not aya's links) so that their period can be
            // changed while they run: see `dither`.
            let prog_fd = prog
                .fd()
                .map_err(|e| format!("the loaded program has no fd: {e}"))?
                .as_fd()
                .as_raw_fd();
            let mut dither = Dither::new();
            let mut timers = Vec::with_capacity(cpus.len());
            for cpu in cpus {
                let period = dithered_period(clock.timer_hz, &mut dither);
                let fd = cpu_clock_event(cpu, period, prog_fd)
                    .map_err(|e| explain(&format!("perf_event_open on CPU {cpu}: {e}"), &e))?;
                timers.push(fd);
            }
            let take = |ebpf: &mut Ebpf, name: &str| {
                ebpf.take_map(name)
                    .ok_or_else(|| format!("map {name} missing from the object"))
            };
            let configs = BpfHashMap::try_from(take(&mut ebpf, "configs")?)
                .map_err(|e| format!("configs: {e}"))?;
            let threads = BpfHashMap::try_from(take(&mut ebpf, "threads")?)
                .map_err(|e| format!("threads: {e}"))?;
            let counters = PerCpuArray::try_from(take(&mut ebpf, "counters")?)
                .map_err(|e| format!("counters: {e}"))?;
            let ring = RingBuf::try_from(take(&mut ebpf, "events")?)
                .map_err(|e| format!("events: {e}"))?;
            Ok(BpfSampler {
                ebpf,
                syscalls: 0,
                configs,
                threads,
                counters,
                ring,
                parsed: BpfSample::default(),
                stack_copy: None,
                timers,
                timer_hz: clock.timer_hz,
                dither,
                next_dither: Instant::now() + dither_block(clock.timer_hz),
            })
        }

        /// Give every CPU's timer a new period (its frequency within ±TIMER_DITHER of
        /// its mean) once per block, so that the timer's fires, which the program's
        /// random gaps choose among, do not stay in step with a cycle of the target
        /// either. Changing the period restarts the timer; the gate's instants are
        /// absolute, so a restart only delays a sample to the next fire.
        pub fn dither(&mut self) {
            let now = Instant::now();
            if now < self.next_dither {
                return;
            }
            self.next_dither = now + dither_block(self.timer_hz);
            for fd in &self.timers {
                let mut period = dithered_period(self.timer_hz, &mut self.dither);
                self.syscalls += 1;
                // SAFETY: PERF_EVENT_IOC_PERIOD reads one u64 from the pointer given.
                unsafe {
                    libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_PERIOD as _, &mut period);
                }
            }
        }

        pub fn add_target(&mut self, pid: i32, cfg: BpfConfig) -> Result<(), String> {
            self.syscalls += 1;
            self.configs
                .insert(pid as u32, cfg, 0)
                .map_err(|e| format!("adding target {pid}: {e}"))
        }

        pub fn remove_target(&mut self, pid: i32) {
            self.syscalls += 1;
            let _ = self.configs.remove(&(pid as u32));
        }

        /// Tell the kernel side which thread state OS thread `tid` runs.
        pub fn set_thread(&mut self, tid: u32, tstate: u64) -> bool {
            self.syscalls += 1;
            self.threads.insert(tid, tstate, 0).is_ok()
        }

        pub fn remove_thread(&mut self, tid: u32) {
            self.syscalls += 1;
            let _ = self.threads.remove(&tid);
        }

        /// The kernel's account of the program (with `kernel.bpf_stats_enabled` set):
        /// runs and nanoseconds spent in it, the sampler's own cost in the target's
        /// context. None when the kernel keeps no statistics.
        pub fn kernel_cost(&self) -> Option<(u64, u64)> {
            let prog = self.ebpf.program("pyprof_sample")?;
            let info = prog.info().ok()?;
            let runs = info.run_count();
            (runs > 0).then(|| (runs, info.run_time().as_nanos() as u64))
        }

        /// Every sample waiting in the ring buffer, oldest first. No system call: the
        /// ring buffer is memory shared with the kernel.
        pub fn drain(&mut self, f: &mut dyn FnMut(&mut BpfSample)) -> u64 {
            let mut bad = 0;
            let mut s = std::mem::take(&mut self.parsed);
            let mut copy = self.stack_copy.take().unwrap_or_default();
            let mut have_copy = false;
            while let Some(item) = self.ring.next() {
                if copy.parse_into(&item) {
                    have_copy = true;
                } else if parse_record_into(&item, &mut s) {
                    // The stack copy sent just before, if it is this sample's.
                    let mine = have_copy && copy.tid == s.tid && copy.ktime == s.ktime;
                    if mine {
                        s.native = Some(std::mem::take(&mut copy));
                        have_copy = false;
                    }
                    f(&mut s);
                    if let Some(c) = s.native.take() {
                        copy = c;
                    }
                } else {
                    bad += 1;
                }
            }
            self.stack_copy = Some(copy);
            self.parsed = s;
            bad
        }

        pub fn counters(&self) -> BpfCounters {
            let get = |i: u32| {
                self.counters
                    .get(&i, 0)
                    .map(|v| v.iter().sum::<u64>())
                    .unwrap_or(0)
            };
            BpfCounters {
                events: get(0),
                emitted: get(1),
                ringbuf_full: get(2),
                unknown_thread: get(3),
                read_errors: get(4),
            }
        }
    }

    fn explain_load(e: &aya::programs::ProgramError) -> String {
        if let aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } = e
        {
            if std::env::var_os("PYPROF_BPF_DEBUG").is_some() {
                eprintln!("{verifier_log}");
            }
            return explain(&format!("loading the program: {io_error}"), io_error);
        }
        explain(&format!("loading the program: {e}"), e)
    }

    /// One line: what failed and, for permission errors, what grants it.
    fn explain(msg: &str, e: &(dyn std::error::Error + 'static)) -> String {
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut errno = None;
        while let Some(s) = src {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                errno = io.raw_os_error();
                break;
            }
            src = s.source();
        }
        let msg = msg.replace('\n', " ");
        match errno {
            Some(libc::EPERM) | Some(libc::EACCES) => format!(
                "{msg}: not permitted (needs CAP_BPF and CAP_PERFMON, or root; \
                 kernel.unprivileged_bpf_disabled, lockdown or a seccomp filter may forbid it)"
            ),
            Some(libc::ENOSYS) => format!("{msg}: the kernel has no bpf() system call"),
            Some(libc::EINVAL) | Some(libc::E2BIG) => {
                format!("{msg}: the kernel rejected the program (needs Linux 5.17 or newer)")
            }
            _ => msg,
        }
    }
}

#[cfg(not(pyprof_bpf))]
mod imp {
    use super::*;

    /// Built without clang: bpf is never available.
    pub struct BpfSampler {
        pub syscalls: u64,
    }

    impl BpfSampler {
        pub fn open(_rate_hz: f64) -> Result<BpfSampler, String> {
            Err(format!(
                "this pyprof was built without the bpf sampler ({})",
                env!("PYPROF_BPF_MISSING")
            ))
        }
        pub fn add_target(&mut self, _pid: i32, _cfg: BpfConfig) -> Result<(), String> {
            Err("bpf unavailable".into())
        }
        pub fn remove_target(&mut self, _pid: i32) {}
        pub fn set_thread(&mut self, _tid: u32, _tstate: u64) -> bool {
            false
        }
        pub fn remove_thread(&mut self, _tid: u32) {}
        pub fn dither(&mut self) {}
        pub fn drain(&mut self, _f: &mut dyn FnMut(&mut BpfSample)) -> u64 {
            0
        }
        pub fn counters(&self) -> BpfCounters {
            BpfCounters::default()
        }
        pub fn kernel_cost(&self) -> Option<(u64, u64)> {
            None
        }
    }
}

pub use imp::BpfSampler;

#[cfg(test)]
mod tests {
    use super::*;

    /// `struct header`: 7 u64 and 4 u32.
    const HEADER: usize = 72;

    #[test]
    fn the_kernel_clock_keeps_the_rate_on_average() {
        for rate in [
            1.0, 19.0, 100.0, 250.0, 997.0, 1000.0, 2000.0, 5000.0, 20_000.0,
        ] {
            let c = Clock::of(rate);
            let interval = 1e9 / rate;
            assert!(
                c.timer_hz >= rate && c.timer_hz <= MAX_TIMER_HZ.max(rate),
                "{c:?}"
            );
            if c.gate_mean == 0 {
                assert_eq!(c.timer_hz, rate);
                continue;
            }
            // A gap is drawn in [mean - spread, mean + spread] and waits for the next
            // fire: half a fire's period on average.
            let fire = 1e9 / c.timer_hz;
            let mean_gap = c.gate_mean as f64 + fire / 2.0;
            assert!((mean_gap - interval).abs() <= 1.0, "{rate} Hz: {c:?}");
            // Gaps spread over whole fires (so that the wait is uniform), never below
            // half the interval.
            let spread_fires = 2.0 * c.gate_spread as f64 / fire;
            assert!((spread_fires - spread_fires.round()).abs() < 1e-3, "{c:?}");
            assert!(
                c.gate_mean - c.gate_spread >= (interval / 2.0) as u64 - 1,
                "{c:?}"
            );
        }
    }

    #[test]
    fn dither_is_uniform_in_minus_one_one() {
        let mut d = crate::sampler::Dither::new();
        let xs: Vec<f64> = (0..100_000).map(|_| d.next_signed()).collect();
        assert!(xs.iter().all(|x| (-1.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.02, "{mean}");
        let quarter = xs.iter().filter(|x| **x < -0.5).count() as f64 / xs.len() as f64;
        assert!((quarter - 0.25).abs() < 0.01, "{quarter}");
    }

    #[test]
    fn structs_have_the_c_sizes() {
        // struct config: 3 u64 + 12 u32, then 1 u64 + 12 u32.
        assert_eq!(std::mem::size_of::<BpfConfig>(), 128);
        assert_eq!(std::mem::size_of::<BpfHeader>(), HEADER);
        assert_eq!(std::mem::size_of::<BpfFrame>(), 48);
    }

    #[test]
    fn stack_copies_parse_and_serve_words_they_hold() {
        let h = BpfHeader {
            tid: 8,
            ktime: 99,
            nframes: 16,
            flags: FLAG_STACK,
            fault_addr: 0x7ffd_0000,
            user_ip: 0x40_1000,
            user_sp: 0x7ffd_0008,
            user_bp: 0x7ffd_0100,
            ..Default::default()
        };
        let mut bytes = vec![0u8; HEADER + 16];
        // SAFETY: BpfHeader is plain old data of HEADER bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(&h as *const _ as *const u8, bytes.as_mut_ptr(), HEADER);
        }
        bytes[HEADER + 8..HEADER + 16].copy_from_slice(&0x1234u64.to_le_bytes());
        let mut c = NativeCopy::default();
        assert!(c.parse_into(&bytes));
        assert_eq!(
            (c.tid, c.ktime, c.ip, c.sp, c.bp),
            (8, 99, 0x40_1000, 0x7ffd_0008, 0x7ffd_0100)
        );
        assert_eq!(c.word(0x7ffd_0008), Some(0x1234));
        assert_eq!(c.word(0x7ffd_0009), None, "past the copy");
        assert_eq!(c.word(0x7ffc_fff8), None, "below it");
        // A short record, and a sample record, are not stack copies.
        assert!(!c.parse_into(&bytes[..HEADER + 8]));
        bytes[28] = 0; // flags
        assert!(!c.parse_into(&bytes));
    }

    #[test]
    fn records_parse_and_truncated_ones_are_refused() {
        let h = BpfHeader {
            tstate: 0x1000,
            pid: 7,
            tid: 8,
            nframes: 2,
            flags: FLAG_TRUNCATED,
            user_ip: 0x7f00_1234,
            ..Default::default()
        };
        let mut bytes = vec![0u8; HEADER + 2 * 48];
        // SAFETY: plain integer structs written into a buffer of their size.
        unsafe {
            std::ptr::copy_nonoverlapping(&h as *const _ as *const u8, bytes.as_mut_ptr(), HEADER);
        }
        bytes[HEADER..HEADER + 8].copy_from_slice(&0xabcdu64.to_le_bytes());
        bytes[HEADER + 8..HEADER + 16].copy_from_slice(&0x5000u64.to_le_bytes());
        bytes[HEADER + 24] = 1; // owner
        bytes[HEADER + 25] = 1; // OWNER_ENTRY: a C call of the eval loop began here
        bytes[HEADER + 32 + 13] = 0x7f; // window[13]: the byte at instr - 1
        let s = parse_record(&bytes).unwrap();
        assert_eq!((s.pid, s.tid, s.raw.tstate), (7, 8, 0x1000));
        assert!(s.raw.truncated);
        assert_eq!(s.raw.ip, Some(0x7f00_1234));
        assert_eq!(s.raw.frames.len(), 2);
        assert_eq!(s.raw.frames[0].code, 0xabcd);
        assert_eq!(s.raw.frames[0].owner, 1);
        assert!(s.raw.frames[0].entry && !s.raw.frames[1].entry);
        assert_eq!(s.opcode_at(0, 0x4fff), Some(0x7f));
        assert_eq!(s.opcode_at(0, 0x5002), None);
        assert!(parse_record(&bytes[..HEADER + 48]).is_none());
    }

    #[test]
    fn compact_records_have_no_windows() {
        let h = BpfHeader {
            nframes: 3,
            flags: FLAG_COMPACT,
            ..Default::default()
        };
        let mut bytes = vec![0u8; HEADER + 3 * COMPACT_FRAME];
        // SAFETY: plain integer structs written into a buffer of their size.
        unsafe {
            std::ptr::copy_nonoverlapping(&h as *const _ as *const u8, bytes.as_mut_ptr(), HEADER);
        }
        for i in 0..3 {
            let at = HEADER + i * COMPACT_FRAME;
            bytes[at..at + 8].copy_from_slice(&(0x100 * (i as u64 + 1)).to_le_bytes());
            bytes[at + 28..at + 32].copy_from_slice(&(i as u32).to_le_bytes());
        }
        let s = parse_record(&bytes).unwrap();
        let codes: Vec<u64> = s.raw.frames.iter().map(|f| f.code).collect();
        assert_eq!(codes, [0x100, 0x200, 0x300]);
        assert_eq!(s.raw.frames[2].tlbc_index, 2);
        assert!(s.windows.is_empty());
        assert_eq!(s.raw.ip, None, "0 is an instruction pointer not read");
        assert_eq!(s.opcode_at(0, 0), None);
        assert!(parse_record(&bytes[..HEADER + 2 * COMPACT_FRAME]).is_none());
    }
}
