// pyprof's in-kernel sampler: on each CPU-clock perf event, if the interrupted thread
// belongs to a target, walk its Python frames with the version's offsets (passed by
// userspace in `configs`: versions are data, there is no per-version code here) and
// push the raw frames (code object, instruction, frame address, and with opcodes the
// bytes around the instruction) to the `events` ring buffer. Userspace keeps all the
// meaning: code objects, line tables, opcode names.
//
// Self-contained on purpose: no kernel or libbpf headers are needed, only clang with
// the BPF target. Helper numbers are the kernel's stable UAPI numbering.
//
// Every loop is bounded: the frame walk is a bpf_loop (kernel >= 5.17) of at most
// `max_depth` kept frames and 2 * max_depth visited ones.

typedef unsigned char u8;
typedef unsigned int u32;
typedef int s32;
typedef unsigned long long u64;
typedef long long s64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

// Map types (enum bpf_map_type).
#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_LRU_HASH 9
#define BPF_MAP_TYPE_RINGBUF 27

// Helpers (enum bpf_func_id).
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static u32 (*bpf_get_smp_processor_id)(void) = (void *)8;
static u32 (*bpf_get_prandom_u32)(void) = (void *)7;
static u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static long (*bpf_probe_read_user)(void *dst, u32 size, const void *unsafe_ptr) = (void *)112;
static long (*bpf_ringbuf_output)(void *ringbuf, void *data, u64 size, u64 flags) = (void *)130;
static long (*bpf_loop)(u32 nr_loops, void *callback_fn, void *callback_ctx, u64 flags) = (void *)181;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, u64 flags) = (void *)2;
static u64 (*bpf_get_current_task)(void) = (void *)35;
static long (*bpf_probe_read_kernel)(void *dst, u32 size, const void *unsafe_ptr) = (void *)113;
static void *(*bpf_get_current_task_btf)(void) = (void *)158;
static void *(*bpf_task_pt_regs)(void *task) = (void *)175;

// Most frames one sample carries (userspace's --max-depth is capped to this).
#define MAX_FRAMES 10000
// Most bytes of a frame read at once (a frame's fields the walk needs lie within this).
#define SPAN_MAX 256
#define MAX_TARGETS 4096
#define MAX_THREADS 131072

// Layout and addresses of one target process (struct BpfConfig in sampler/bpf.rs).
struct config {
    u64 gil_locked;      // address of the GIL's `locked` int (0: held when the holder
                         // pointer is not null, as `_PyThreadState_Current` on 2.7/3.6)
    u64 gil_holder;      // address of the GIL's holder pointer, 0 if unknown
    u64 code_tag_mask;   // low bits of the frame's code pointer that are tags (3.14+)
    u32 frame_kind;      // 0: PyFrameObject (<= 3.10), 1: _PyInterpreterFrame (3.11+)
    u32 tstate_frame;    // tstate->frame / cframe / current_frame
    s32 cframe_current;  // cframe->current_frame (3.11/3.12), -1 otherwise
    u32 frame_back;
    u32 frame_code;
    u32 frame_instr;
    s32 frame_owner;     // -1 where frames have no owner
    s32 owner_cstack;    // owner values of frames that are not Python code, -1 if none
    s32 owner_interp;
    u32 max_depth;
    u32 opcodes;         // copy the bytes around each frame's instruction
    s32 frame_tlbc;      // 3.14+ free-threaded: the frame's tlbc_index (int32), else -1
    // Finding the thread state of a thread not in `threads` yet: the interpreter's list
    // (its head's address), each thread state's `next` and `thread_id` (pthread_self()),
    // and where the kernel keeps a task's pthread_self() (task_struct.thread.fsbase on
    // x86-64, from the kernel's BTF; -1 when unknown: such threads wait for userspace).
    u64 tstate_head;
    u32 tstate_next;
    u32 tstate_thread_id;
    s32 task_pthread;
    u32 max_threads;
    s32 task_mm;         // task_struct.mm, -1 when unknown
    s32 task_flags;      // task_struct.flags (PF_EXITING), -1 when unknown
    u32 span_start;      // the part of a frame holding every field read, as offsets
    u32 span_len;        //   from the frame (at most SPAN_MAX bytes)
    u32 user_ip;         // copy the thread's user instruction pointer: 1 when the
                         //   kernel's pt_regs has `ip` at PT_REGS_IP (checked against
                         //   the kernel's BTF by userspace), else 0
    u32 native_stack;    // --native: bytes of the user stack to copy with the user
                         //   registers (whole pages, at most STACK_MAX), 0: none
    s32 frame_is_entry;  // 3.11: `is_entry`, offset in the frame; -1 elsewhere
    u32 pad;
};

// Where x86-64's struct pt_regs keeps the instruction pointer (userspace checks it
// against the running kernel's BTF and leaves `user_ip` off when it differs).
#define PT_REGS_IP 128
#define PT_REGS_SP 152
#define PT_REGS_BP 32
// --native: the most user stack copied with a sample, from the page holding the stack
// pointer up.
#define STACK_MAX 32768

#define PF_EXITING 0x4

// Is the current task exiting (its process killed, or the thread ending)?
static __attribute__((always_inline)) int exiting(struct config *cfg) {
    if (cfg->task_flags < 0)
        return 0;
    u32 flags = 0;
    u64 task = bpf_get_current_task();
    if (bpf_probe_read_kernel(&flags, 4, (void *)(task + cfg->task_flags)))
        return 0;
    return (flags & PF_EXITING) != 0;
}

// One frame (struct BpfFrame in sampler/bpf.rs). Without opcodes a sample's frames are
// `struct frame_compact` (FLAG_COMPACT): the same fields without the window, a third
// fewer bytes to write and to copy to the ring buffer at each of a deep stack's frames.
struct frame {
    u64 code;
    u64 instr;
    u64 frame;
    u32 owner;
    u32 tlbc_index;      // which copy of the bytecode the frame runs (free-threaded)
    u8 window[16];       // bytes [instr - 14, instr + 2) with opcodes
};

struct frame_compact {
    u64 code;
    u64 instr;
    u64 frame;
    u32 owner;
    u32 tlbc_index;
};

#define FLAG_TRUNCATED 1
#define FLAG_HOLDS_GIL 2
#define FLAG_UNKNOWN_THREAD 4
#define FLAG_READ_ERROR 8
#define FLAG_NOT_PYTHON 16
#define FLAG_COMPACT 32      // frames are struct frame_compact
#define FLAG_STACK 64        // a record of user stack bytes (struct stack_copy), sent
                             //   just before the sample of the same tid and ktime
// A frame's `owner` with this bit set: the root-most frame of one C call of the eval
// loop (a shim followed it, or 3.11's `is_entry`).
#define OWNER_ENTRY 0x100

// A thread looked up in the interpreter's list and not found is remembered as such
// (ktime | 1: thread states are aligned) and looked up again after this long.
#define NOT_PYTHON_FOR 100000000ULL

// One sample's header (struct BpfHeader in sampler/bpf.rs).
struct header {
    u64 ktime;
    u64 tstate;
    u32 pid;
    u32 tid;
    u32 nframes;
    u32 flags;
    u64 fault_addr;      // the address whose read failed (FLAG_READ_ERROR)
    u64 cursor;          // the next frame to read (the walk's state, kept in the map
                         // so that the verifier sees an unknown value and converges)
    u64 user_ip;         // where the thread was in userspace when it entered the
                         // kernel for this event (0: not read): the interpreter, or
                         // native code it called (a C extension, a library, a syscall)
    u64 user_sp;         // --native: its stack and frame pointers then
    u64 user_bp;
};

// --native: the user stack, [fault_addr, fault_addr + nframes) (the header's fields
// reused: FLAG_STACK), copied whole pages at a time.
struct stack_copy {
    struct header h;
    u8 b[STACK_MAX];
};

struct sample {
    struct header h;
    struct frame frames[MAX_FRAMES];
};

// Counters (index → meaning in sampler/bpf.rs).
#define C_EVENTS 0       // perf events in a target thread
#define C_EMITTED 1      // samples pushed to the ring buffer
#define C_RINGBUF_FULL 2 // samples lost: ring buffer full
#define C_UNKNOWN 3      // thread not (yet) in `threads`
#define C_READ_ERROR 4   // a frame read failed
#define N_COUNTERS 8

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_TARGETS);
    __type(key, u32);
    __type(value, struct config);
} configs SEC(".maps");

// OS thread id (as the kernel numbers it) → PyThreadState address, kept by userspace and
// filled in by the program for threads it finds itself (LRU: threads that come and go
// by the thousand do not fill it up).
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, MAX_THREADS);
    __type(key, u32);
    __type(value, u64);
} threads SEC(".maps");

// Scratch space for one sample per CPU, indexed by CPU number (userspace sets
// max_entries to the number of possible CPUs). Not a per-CPU map: those are limited
// to 32 KiB values. Programs do not nest on one CPU, so a CPU's slot is its own.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, struct sample);
} scratch SEC(".maps");

// --native: one stack copy per CPU (max_entries set by userspace, as for `scratch`).
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, struct stack_copy);
} stacks SEC(".maps");

// A frame's bytes, per CPU (the BPF stack is small); and the page of the data stack the
// walk is in, read whole: 3.11+ frames sit side by side in their thread's data-stack
// chunk, a caller below its callee, so one page read serves every frame in it (about 50
// of them) instead of one read per frame. `page` has SPAN_MAX bytes of slack after the
// page so that a field read at any offset within it stays inside the buffer.
#define PAGE 4096
struct span {
    u8 b[SPAN_MAX + 8];
    u8 page[PAGE + SPAN_MAX + 8];
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, struct span);
} spans SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, N_COUNTERS);
    __type(key, u32);
    __type(value, u64);
} counters SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 32 << 20);
} events SEC(".maps");

static __attribute__((always_inline)) void count(u32 which) {
    u64 *c = bpf_map_lookup_elem(&counters, &which);
    if (c)
        *c += 1;
}

struct walk {
    struct config *cfg;
    struct sample *s;
    u8 *buf;
    u8 *page;
    u64 page_at;         // the address `page` holds a copy of (0: none yet)
    // Each field's offset from the span's start, worked out once per sample (one-byte
    // values: the verifier knows they are below 256 with no check in the loop; the
    // buffers have 8 bytes of slack past SPAN_MAX for the widest field read there).
    u8 o_back, o_code, o_instr, o_owner, o_tlbc;
    u8 has_owner, has_tlbc;
};

// The search of the thread list for the thread state whose thread_id is `want`.
struct find {
    struct config *cfg;
    u64 want;
    u64 cursor;
    u64 found;
};

static long find_one(u32 index, struct find *f) {
    u64 t = f->cursor;
    if (t == 0)
        return 1;
    u64 id = 0, next = 0;
    if (bpf_probe_read_user(&id, 8, (void *)(t + f->cfg->tstate_thread_id)) ||
        bpf_probe_read_user(&next, 8, (void *)(t + f->cfg->tstate_next)))
        return 1;
    if (id == f->want) {
        f->found = t;
        return 1;
    }
    f->cursor = next == t ? 0 : next;
    return 0;
}

// The thread state of the current thread, found in the interpreter's list by its
// pthread_self() and remembered in `threads`; 0 if it cannot be looked up, 1 if it is not
// in the list (a thread that runs no Python now: starting, ending, or not Python's).
static u64 find_tstate(struct config *cfg, u32 tid) {
    if (cfg->task_pthread < 0 || !cfg->tstate_head)
        return 0;
    u64 task = bpf_get_current_task();
    u64 self = 0;
    if (bpf_probe_read_kernel(&self, 8, (void *)(task + cfg->task_pthread)) || !self)
        return 0;
    if (cfg->task_mm >= 0) {
        // A task with no memory of its own (exiting, past exit_mm) runs no Python.
        u64 mm = 0;
        if (!bpf_probe_read_kernel(&mm, 8, (void *)(task + cfg->task_mm)) && !mm)
            return 1;
    }
    u64 head = 0;
    if (bpf_probe_read_user(&head, 8, (void *)cfg->tstate_head))
        return 0;
    struct find f = {.cfg = cfg, .want = self, .cursor = head, .found = 0};
    u32 n = cfg->max_threads;
    if (n > MAX_THREADS)
        n = MAX_THREADS;
    bpf_loop(n, find_one, &f, 0);
    if (f.found) {
        bpf_map_update_elem(&threads, &tid, &f.found, 0);
        return f.found;
    }
    u64 none = bpf_ktime_get_ns() | 1;
    bpf_map_update_elem(&threads, &tid, &none, 0);
    return 1;
}

// One step of the walk: read the frame at s->h.cursor, keep it unless it is a shim.
static long walk_one(u32 index, struct walk *w) {
    struct config *cfg = w->cfg;
    struct sample *s = w->s;
    u64 f = s->h.cursor;
    if (f == 0)
        return 1;
    u32 n = s->h.nframes;
    if (n >= cfg->max_depth || n >= MAX_FRAMES) {
        s->h.flags |= FLAG_TRUNCATED;
        return 1;
    }
    // Every field the walk needs, in one read: the frame's [span_start, span_start +
    // span_len) (offsets below are from the frame; userspace computed the span).
    u8 *buf = w->buf;
    u32 len = cfg->span_len;
    if (len > SPAN_MAX)
        len = SPAN_MAX;
    if (len == 0) {
        s->h.flags |= FLAG_READ_ERROR;
        s->h.fault_addr = f;
        return 1;
    }
    u64 lo = f + cfg->span_start;
    u64 at = (lo + len - 1) & ~(u64)(PAGE - 1);
    u32 off = (u32)(lo - at);
    if (cfg->frame_kind == 1 && lo >= at && off < PAGE) {
        // Within one page: from the copy of that page (read now if it is another one).
        if (at != w->page_at) {
            if (bpf_probe_read_user(w->page, PAGE, (void *)at)) {
                s->h.flags |= FLAG_READ_ERROR;
                s->h.fault_addr = f;
                return 1;
            }
            w->page_at = at;
        }
        if (off > PAGE - 1)
            return 1;
        buf = w->page + off;
    } else if (bpf_probe_read_user(buf, len, (void *)lo)) {
        // A frame across a page boundary (or ≤3.10 frame objects): its own read.
        s->h.flags |= FLAG_READ_ERROR;
        s->h.fault_addr = f;
        return 1;
    }
    u64 back = *(u64 *)(buf + w->o_back);
    u64 code = *(u64 *)(buf + w->o_code);
    u64 instr = *(u64 *)(buf + w->o_instr);
    u64 owner = 0;
    u32 tlbc = 0;
    if (w->has_owner)
        owner = buf[w->o_owner];
    if (w->has_tlbc)
        tlbc = *(u32 *)(buf + w->o_tlbc);
    // A frame pointing at itself is kept and the walk ends: userspace reports the cycle.
    s->h.cursor = back == f ? 0 : back;
    if ((s32)owner == cfg->owner_cstack || (s32)owner == cfg->owner_interp) {
        // A shim: the frame kept before it began one C call of the eval loop.
        if (n > 0 && n <= MAX_FRAMES) {
            if (cfg->opcodes)
                s->frames[n - 1].owner |= OWNER_ENTRY;
            else
                ((struct frame_compact *)s->frames)[n - 1].owner |= OWNER_ENTRY;
        }
        return 0;
    }
    if (cfg->frame_is_entry >= 0) {
        u32 oe = (u32)cfg->frame_is_entry - cfg->span_start;
        if (oe < SPAN_MAX && buf[oe])
            owner |= OWNER_ENTRY;
    }
    if (cfg->opcodes) {
        struct frame *out = &s->frames[n];
        out->code = code & ~cfg->code_tag_mask;
        out->instr = instr;
        out->frame = f;
        out->owner = (u32)owner;
        out->tlbc_index = tlbc;
        __builtin_memset(out->window, 0, sizeof(out->window));
        if (cfg->frame_kind == 1 && instr > 14)
            bpf_probe_read_user(out->window, sizeof(out->window), (void *)(instr - 14));
    } else {
        struct frame_compact *out = &((struct frame_compact *)s->frames)[n];
        out->code = code & ~cfg->code_tag_mask;
        out->instr = instr;
        out->frame = f;
        out->owner = (u32)owner;
        out->tlbc_index = tlbc;
    }
    s->h.nframes = n + 1;
    return 0;
}

// Sampling instants. Equal intervals lock onto a program that runs in a cycle (an event
// loop's round of tasks) and see only the part of the cycle they keep landing on; so the
// timer fires `grid` times per mean interval and a CPU samples at the first fire after
// its `next_due`, then draws the next gap: uniform in [gate_mean - gate_spread, gate_mean
// + gate_spread] ns, where gate_mean is the rate's interval less half a timer period (the
// wait for the next fire), so that the mean interval is the rate's. Set by userspace
// (sampler/bpf.rs); gate_mean 0: every fire samples.
volatile const u64 gate_mean = 0;
volatile const u64 gate_spread = 0;

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64);
} next_due SEC(".maps");

// --native: send the user stack from the page holding the stack pointer up, as many
// whole pages as read (a page not resident ends the copy), before the sample itself.
static __attribute__((noinline)) int copy_stack(struct config *cfg, struct sample *s, u32 cpu) {
    struct stack_copy *c = bpf_map_lookup_elem(&stacks, &cpu);
    if (!c)
        return 0;
    u64 base = s->h.user_sp & ~(u64)(PAGE - 1);
    u32 want = cfg->native_stack;
    u32 got = 0;
    for (u32 i = 0; i < STACK_MAX / PAGE; i++) {
        if (got + PAGE > want)
            break;
        if (bpf_probe_read_user(c->b + i * PAGE, PAGE, (void *)(base + (u64)i * PAGE)))
            break;
        got += PAGE;
    }
    c->h.ktime = s->h.ktime;
    c->h.tstate = s->h.tstate;
    c->h.pid = s->h.pid;
    c->h.tid = s->h.tid;
    c->h.nframes = got;
    c->h.flags = FLAG_STACK;
    c->h.fault_addr = base;
    c->h.cursor = 0;
    c->h.user_ip = s->h.user_ip;
    c->h.user_sp = s->h.user_sp;
    c->h.user_bp = s->h.user_bp;
    if (got > STACK_MAX)
        got = STACK_MAX;
    if (bpf_ringbuf_output(&events, c, sizeof(struct header) + got, 0))
        count(C_RINGBUF_FULL);
    return 0;
}

SEC("perf_event")
int pyprof_sample(void *ctx) {
    if (gate_mean) {
        u32 zero = 0;
        u64 *due = bpf_map_lookup_elem(&next_due, &zero);
        if (!due)
            return 0;
        u64 now = bpf_ktime_get_ns();
        if (now < *due)
            return 0;
        u64 r = bpf_get_prandom_u32();
        *due = now + gate_mean - gate_spread + ((2 * gate_spread * r) >> 32);
    }
    u64 id = bpf_get_current_pid_tgid();
    u32 pid = id >> 32;
    u32 tid = (u32)id;
    struct config *cfg = bpf_map_lookup_elem(&configs, &pid);
    if (!cfg)
        return 0;
    count(C_EVENTS);
    u32 cpu = bpf_get_smp_processor_id();
    struct sample *s = bpf_map_lookup_elem(&scratch, &cpu);
    if (!s)
        return 0;
    s->h.ktime = bpf_ktime_get_ns();
    s->h.pid = pid;
    s->h.tid = tid;
    s->h.nframes = 0;
    s->h.flags = 0;
    s->h.fault_addr = 0;
    s->h.cursor = 0;
    s->h.user_ip = 0;
    s->h.user_sp = 0;
    s->h.user_bp = 0;
    if (cfg->user_ip) {
        // The user registers saved at the top of the task's kernel stack when it
        // entered the kernel: for this event, or for the syscall it is in.
        char *regs = bpf_task_pt_regs(bpf_get_current_task_btf());
        if (regs) {
            bpf_probe_read_kernel(&s->h.user_ip, 8, regs + PT_REGS_IP);
            if (cfg->native_stack) {
                bpf_probe_read_kernel(&s->h.user_sp, 8, regs + PT_REGS_SP);
                bpf_probe_read_kernel(&s->h.user_bp, 8, regs + PT_REGS_BP);
            }
        }
    }
    u64 tstate = 0;
    u64 *tsp = bpf_map_lookup_elem(&threads, &tid);
    if (tsp)
        tstate = *tsp;
    if (!tstate || ((tstate & 1) && s->h.ktime - (tstate & ~1ULL) > NOT_PYTHON_FOR))
        tstate = find_tstate(cfg, tid);
    if (tstate & 1) {
        // Not a Python thread at the moment: nothing to sample, nothing failed.
        s->h.tstate = 0;
        s->h.flags = FLAG_NOT_PYTHON;
        if (bpf_ringbuf_output(&events, s, sizeof(struct header), 0))
            count(C_RINGBUF_FULL);
        return 0;
    }
    if (!tstate) {
        count(C_UNKNOWN);
        s->h.tstate = 0;
        s->h.flags = FLAG_UNKNOWN_THREAD;
        if (bpf_ringbuf_output(&events, s, sizeof(struct header), 0))
            count(C_RINGBUF_FULL);
        return 0;
    }
    s->h.tstate = tstate;
    if (cfg->native_stack && s->h.user_sp)
        copy_stack(cfg, s, cpu);
    if (cfg->gil_holder) {
        u32 locked = 1;
        u64 holder = 0;
        if (cfg->gil_locked && bpf_probe_read_user(&locked, 4, (void *)cfg->gil_locked))
            locked = 0;
        if (!bpf_probe_read_user(&holder, 8, (void *)cfg->gil_holder) && locked &&
            holder == tstate)
            s->h.flags |= FLAG_HOLDS_GIL;
    }
    u64 frame = 0;
    if (bpf_probe_read_user(&frame, 8, (void *)(tstate + cfg->tstate_frame))) {
        s->h.flags |= FLAG_READ_ERROR;
        s->h.fault_addr = tstate;
    } else if (cfg->cframe_current >= 0 && frame) {
        u64 cf = frame;
        frame = 0;
        if (bpf_probe_read_user(&frame, 8, (void *)(cf + cfg->cframe_current))) {
            s->h.flags |= FLAG_READ_ERROR;
            s->h.fault_addr = cf;
        }
    }
    s->h.cursor = frame;
    u32 zero = 0;
    u8 *buf = bpf_map_lookup_elem(&spans, &zero);
    if (!buf)
        return 0;
    struct span *sp = (struct span *)buf;
    struct walk w = {.cfg = cfg, .s = s, .buf = sp->b, .page = sp->page, .page_at = 0};
    // (Offsets past the span would be a bad configuration: no walk.)
    u32 ob = cfg->frame_back - cfg->span_start, oc = cfg->frame_code - cfg->span_start;
    u32 oi = cfg->frame_instr - cfg->span_start;
    u32 oo = (u32)cfg->frame_owner - cfg->span_start, ot = (u32)cfg->frame_tlbc - cfg->span_start;
    w.has_owner = cfg->frame_owner >= 0;
    w.has_tlbc = cfg->frame_tlbc >= 0;
    if (ob > SPAN_MAX - 8 || oc > SPAN_MAX - 8 || oi > SPAN_MAX - 8 ||
        (w.has_owner && oo > SPAN_MAX - 1) || (w.has_tlbc && ot > SPAN_MAX - 4)) {
        s->h.flags |= FLAG_READ_ERROR;
        s->h.fault_addr = 0;
    }
    w.o_back = ob;
    w.o_code = oc;
    w.o_instr = oi;
    w.o_owner = oo;
    w.o_tlbc = ot;
    if (!(s->h.flags & FLAG_READ_ERROR)) {
        u32 visits = cfg->max_depth;
        if (visits > MAX_FRAMES)
            visits = MAX_FRAMES;
        bpf_loop(2 * visits + 1, walk_one, &w, 0);
    }
    if ((s->h.flags & FLAG_READ_ERROR) && exiting(cfg)) {
        // A read failed because the thread is going away: nothing to sample.
        s->h.flags = FLAG_NOT_PYTHON;
        s->h.nframes = 0;
        if (bpf_ringbuf_output(&events, s, sizeof(struct header), 0))
            count(C_RINGBUF_FULL);
        return 0;
    }
    if (s->h.flags & FLAG_READ_ERROR)
        count(C_READ_ERROR);
    u32 n = s->h.nframes;
    if (n > MAX_FRAMES)
        n = MAX_FRAMES;
    s->h.nframes = n;
    u64 size = sizeof(struct header) + (u64)n * sizeof(struct frame);
    if (!cfg->opcodes) {
        s->h.flags |= FLAG_COMPACT;
        size = sizeof(struct header) + (u64)n * sizeof(struct frame_compact);
    }
    if (size > sizeof(struct sample))
        size = sizeof(struct sample);
    if (bpf_ringbuf_output(&events, s, size, 0))
        count(C_RINGBUF_FULL);
    else
        count(C_EMITTED);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
