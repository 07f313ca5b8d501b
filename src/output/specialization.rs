//! What the specializing interpreter (3.11+) did with the sampled instructions.
//!
//! * The state of an executed opcode: specialized (and, for calls bound to a C function,
//!   "calls C"), unspecialized (the adaptive or generic form of a family that can
//!   specialize), an instruction that cannot specialize in that version, instrumented, or
//!   a tier-2 executor. "Can specialize" is read from the generated opcode tables: a base
//!   instruction with specialized forms in that version. 3.11/3.12 superinstructions
//!   (`LOAD_FAST__LOAD_FAST`: two instructions fused, named `A__B`) are not
//!   specializations.
//! * Sites (one instruction of one function) and the hot ones that ran unspecialized or
//!   were sampled in several specialized forms (polymorphic: the instruction was
//!   rewritten while running), each with a one-line reason from CPython's specialization
//!   rules for that family, stated only in terms of what was sampled.

use super::disasm::{self, Symbols};
use super::opcodes::{pct, table_of};
use crate::code::opcodes::{self as ops, OpcodeTable};
use crate::profile::{
    CodeSnapshot, FormShare, InstructionStat, ProfileData, SpecializationProblem,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

/// A site is hot from this share of all instruction samples (percent) ...
pub const HOT_SHARE: f64 = 1.0;
/// ... and this many samples.
pub const HOT_SAMPLES: u64 = 5;
/// A site runs unspecialized when at least this share of its samples are (percent).
pub const UNSPECIALIZED_SHARE: f64 = 20.0;
/// A specialized form counts for polymorphism from this share of the site (percent) and
/// two samples (one sample can be the moment of a single re-specialization).
pub const FORM_SHARE: f64 = 5.0;

/// The state of an executed opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// A specialized form.
    Specialized,
    /// A specialized call form bound to a C function: its samples are time in that function.
    CallsC,
    /// The adaptive or generic form of a family that can specialize.
    Unspecialized,
    /// An instruction with no specialized forms in this version (superinstructions too).
    Plain,
    /// `INSTRUMENTED_*`: tracing or `sys.monitoring` is active.
    Instrumented,
    /// `ENTER_EXECUTOR`: a tier-2 trace starts here.
    Executor,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Specialized,
        State::CallsC,
        State::Unspecialized,
        State::Plain,
        State::Instrumented,
        State::Executor,
    ];

    /// Short name, as reports and the JSON use it.
    pub fn label(self) -> &'static str {
        match self {
            State::Specialized => "specialized",
            State::CallsC => "specialized, calls C",
            State::Unspecialized => "unspecialized",
            State::Plain => "cannot specialize",
            State::Instrumented => "instrumented",
            State::Executor => "tier 2 executor",
        }
    }

    /// What a legend says about it.
    pub fn legend(self) -> &'static str {
        match self {
            State::Specialized => "specialized",
            State::CallsC => "specialized call into C (time in the C function)",
            State::Unspecialized => "unspecialized (adaptive or generic)",
            State::Plain => "cannot specialize",
            State::Instrumented => "instrumented (tracing / sys.monitoring)",
            State::Executor => "tier 2 executor",
        }
    }

    /// Its colour in flamegraphs (none is in the red–yellow range of function frames).
    pub fn rgb(self) -> (u8, u8, u8) {
        match self {
            State::Specialized => (64, 170, 90),
            State::CallsC => (40, 160, 170),
            State::Unspecialized => (190, 70, 200),
            State::Plain => (150, 160, 185),
            State::Instrumented => (110, 110, 120),
            State::Executor => (70, 110, 220),
        }
    }
}

/// `A__B` where `A` and `B` are instructions of the table: a 3.11/3.12 superinstruction.
pub fn is_superinstruction(table: &OpcodeTable, name: &str) -> bool {
    match name.split_once("__") {
        Some((a, b)) => table.opcode(a).is_some() && table.opcode(b).is_some(),
        None => false,
    }
}

/// What a table says about each opcode, worked out once per table.
struct Facts {
    /// By opcode: has specialized forms (as a base).
    can: [bool; 256],
    /// By opcode: a superinstruction.
    sup: [bool; 256],
}

fn facts(table: &'static OpcodeTable) -> &'static Facts {
    static ALL: OnceLock<Mutex<HashMap<usize, &'static Facts>>> = OnceLock::new();
    let key = table as *const OpcodeTable as usize;
    let mut all = ALL
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    all.entry(key).or_insert_with(|| {
        let mut f = Facts {
            can: [false; 256],
            sup: [false; 256],
        };
        for op in 0..=255u8 {
            if let Some(name) = table.opname(op) {
                f.sup[op as usize] = is_superinstruction(table, name);
            }
        }
        for op in 0..=255u8 {
            let i = op as usize;
            if table.is_defined(op)
                && table.base(op) != op
                && table.is_specialized(op)
                && !table.is_adaptive(op)
                && !table.is_instrumented(op)
                && !f.sup[i]
            {
                f.can[table.base(op) as usize] = true;
            }
        }
        Box::leak(Box::new(f))
    })
}

/// The specialized forms of `base` in this version (not adaptive, not superinstructions).
pub fn specialized_forms(table: &'static OpcodeTable, base: &str) -> Vec<&'static str> {
    let Some(b) = table.opcode(base) else {
        return Vec::new();
    };
    let f = facts(table);
    (0..=255u8)
        .filter(|&op| {
            table.is_defined(op)
                && op != b
                && table.base(op) == b
                && table.is_specialized(op)
                && !table.is_adaptive(op)
                && !table.is_instrumented(op)
                && !f.sup[op as usize]
        })
        .filter_map(|op| table.opname(op))
        .collect()
}

/// Whether `base` has specialized forms in this version.
pub fn can_specialize(table: &'static OpcodeTable, base: &str) -> bool {
    table
        .opcode(base)
        .is_some_and(|b| facts(table).can[b as usize])
}

/// Specialized call forms the specializer bound to a C function.
fn calls_c(name: &str) -> bool {
    name.starts_with("CALL")
        && [
            "BUILTIN",
            "METHOD_DESCRIPTOR",
            "_LEN",
            "_ISINSTANCE",
            "_LIST_APPEND",
            "_STR_1",
            "_TUPLE_1",
            "_TYPE_1",
            "NON_PY",
        ]
        .iter()
        .any(|k| name.contains(k))
}

/// The state of `opcode` (executed name) whose base is `base`.
pub fn state(table: Option<&'static OpcodeTable>, opcode: &str, base: &str) -> State {
    if opcode.starts_with("INSTRUMENTED_") {
        return State::Instrumented;
    }
    if opcode == "ENTER_EXECUTOR" {
        return State::Executor;
    }
    let Some(t) = table.filter(|t| t.has_inline_caches()) else {
        return State::Plain;
    };
    let Some(op) = t.opcode(opcode) else {
        return State::Plain;
    };
    if facts(t).sup[op as usize] {
        return State::Plain;
    }
    if t.is_specialized(op) && !t.is_adaptive(op) && opcode != base {
        return if calls_c(opcode) {
            State::CallsC
        } else {
            State::Specialized
        };
    }
    if can_specialize(t, base) {
        State::Unspecialized
    } else {
        State::Plain
    }
}

/// The label of an opcode in listings: its state, or "superinstruction".
pub fn kind_label(table: Option<&'static OpcodeTable>, opcode: &str, base: &str) -> &'static str {
    if let Some(t) = table {
        if t.has_inline_caches() && t.opcode(opcode).is_some_and(|op| facts(t).sup[op as usize]) {
            return "superinstruction";
        }
    }
    state(table, opcode, base).label()
}

/// One instruction of one function, with the forms it was sampled as.
#[derive(Clone, Debug)]
pub struct Site {
    pub file: String,
    pub function: String,
    pub first_line: i32,
    pub line: i32,
    pub offset: u32,
    pub base: String,
    pub samples: u64,
    /// (opcode, samples), most samples first.
    pub forms: Vec<(String, u64)>,
}

impl Site {
    fn share_of(&self, table: Option<&'static OpcodeTable>, s: State) -> f64 {
        let n: u64 = self
            .forms
            .iter()
            .filter(|(op, _)| state(table, op, &self.base) == s)
            .map(|(_, n)| n)
            .sum();
        pct(n, self.samples)
    }

    /// The specialized forms that count for polymorphism.
    pub fn significant_forms(&self, table: Option<&'static OpcodeTable>) -> Vec<&(String, u64)> {
        self.forms
            .iter()
            .filter(|(op, n)| {
                matches!(
                    state(table, op, &self.base),
                    State::Specialized | State::CallsC
                ) && *n >= 2
                    && pct(*n, self.samples) >= FORM_SHARE
            })
            .collect()
    }

    /// Sampled in two or more specialized forms.
    pub fn polymorphic(&self, table: Option<&'static OpcodeTable>) -> bool {
        self.significant_forms(table).len() >= 2
    }

    pub fn unspecialized_share(&self, table: Option<&'static OpcodeTable>) -> f64 {
        self.share_of(table, State::Unspecialized)
    }
}

/// Sites from instruction statistics, most samples first.
pub fn sites(stats: &[InstructionStat]) -> Vec<Site> {
    type Key = (String, String, i32, u32);
    /// Line, samples per executed form, samples per base.
    type Tally = (i32, BTreeMap<String, u64>, HashMap<String, u64>);
    let mut by: HashMap<Key, Tally> = HashMap::new();
    for s in stats {
        let e = by
            .entry((s.file.clone(), s.function.clone(), s.first_line, s.offset))
            .or_insert_with(|| (s.line, BTreeMap::new(), HashMap::new()));
        *e.1.entry(s.opcode.clone()).or_insert(0) += s.samples;
        *e.2.entry(s.base_opcode.clone()).or_insert(0) += s.samples;
    }
    let mut out: Vec<Site> = by
        .into_iter()
        .map(
            |((file, function, first_line, offset), (line, forms, bases))| {
                let mut forms: Vec<(String, u64)> = forms.into_iter().collect();
                forms.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                let base = bases
                    .into_iter()
                    .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
                    .map(|(b, _)| b)
                    .unwrap_or_default();
                Site {
                    file,
                    function,
                    first_line,
                    line,
                    offset,
                    base,
                    samples: forms.iter().map(|f| f.1).sum(),
                    forms,
                }
            },
        )
        .collect();
    out.sort_by(|a, b| {
        b.samples.cmp(&a.samples).then_with(|| {
            (&a.file, a.first_line, &a.function, a.offset).cmp(&(
                &b.file,
                b.first_line,
                &b.function,
                b.offset,
            ))
        })
    });
    out
}

fn stats_of(data: &ProfileData) -> Vec<InstructionStat> {
    if data.instructions.is_empty() {
        data.instruction_stats()
    } else {
        data.instructions.clone()
    }
}

/// The recorded bytecode of a function, decoded, with what its arguments index.
pub struct Decoded<'a> {
    pub snapshot: &'a CodeSnapshot,
    pub code: Vec<u8>,
}

impl<'a> Decoded<'a> {
    pub fn find(
        data: &'a ProfileData,
        file: &str,
        function: &str,
        first_line: i32,
    ) -> Option<Self> {
        let snapshot = data
            .code
            .iter()
            .find(|c| c.file == file && c.function == function && c.first_line == first_line)?;
        Some(Decoded {
            snapshot,
            code: unhex(&snapshot.bytecode),
        })
    }

    /// The instruction at `offset` and the one before it.
    pub fn at(&self, table: &OpcodeTable, offset: u32) -> (Option<ops::Instr>, Option<ops::Instr>) {
        let mut prev = None;
        for ins in ops::instructions(table, &self.code) {
            if ins.offset as u32 == offset {
                return (Some(ins), prev);
            }
            if ins.offset as u32 > offset {
                break;
            }
            prev = Some(ins);
        }
        (None, None)
    }
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// Was the profile taken of the free-threaded build of 3.13? It compiles its specializing
/// interpreter out (`ENABLE_SPECIALIZATION` is 0 under `Py_GIL_DISABLED`): its bytecode
/// has the inline caches of 3.13, but every instruction runs in its generic form.
pub fn no_specializer(data: &ProfileData) -> bool {
    data.meta.python_version.ends_with('t')
        && table_of(data).is_some_and(|t| t.has_inline_caches() && t.version() == (3, 13))
}

/// The hot sites that ran unspecialized or polymorphic, most samples first.
pub fn problems(data: &ProfileData) -> Vec<SpecializationProblem> {
    let Some(table) = table_of(data).filter(|t| t.has_inline_caches()) else {
        return Vec::new();
    };
    // (No operand explains a generic form where nothing specializes.)
    let no_specializer = no_specializer(data);
    let stats = stats_of(data);
    let total: u64 = stats.iter().map(|s| s.samples).sum();
    let mut out = Vec::new();
    for site in sites(&stats) {
        if site.samples < HOT_SAMPLES || pct(site.samples, total) < HOT_SHARE {
            continue;
        }
        let poly = site.polymorphic(Some(table));
        let unspec = site.unspecialized_share(Some(table));
        if !poly && unspec < UNSPECIALIZED_SHARE {
            continue;
        }
        let decoded = Decoded::find(data, &site.file, &site.function, site.first_line);
        let (ins, prev) = decoded
            .as_ref()
            .map(|d| d.at(table, site.offset))
            .unwrap_or((None, None));
        let argument = match (&decoded, &ins) {
            (Some(d), Some(i)) => disasm::argrepr(table, i, &Symbols::of(d.snapshot)),
            _ => None,
        };
        let ctx = Context {
            table,
            base: &site.base,
            argument: argument.as_deref(),
            prev: prev.map(|p| p.base_name),
            unspecialized: unspec,
        };
        let reason = if no_specializer && !poly {
            no_specializer_reason(&ctx)
        } else if poly {
            let mut r = polymorphic_reason(&ctx, &site.significant_forms(Some(table)));
            if unspec >= UNSPECIALIZED_SHARE {
                r.push_str(&format!(
                    "; between forms it ran unspecialized ({unspec:.0}% of its samples)"
                ));
            }
            r
        } else {
            unspecialized_reason(&ctx)
        };
        out.push(SpecializationProblem {
            file: site.file.clone(),
            function: site.function.clone(),
            first_line: site.first_line,
            line: site.line,
            offset: site.offset,
            instruction: site.base.clone(),
            argument,
            kind: if poly { "polymorphic" } else { "unspecialized" }.into(),
            samples: site.samples,
            share: round1(pct(site.samples, total)),
            forms: site
                .forms
                .iter()
                .map(|(op, n)| FormShare {
                    opcode: op.clone(),
                    state: state(Some(table), op, &site.base).label().into(),
                    samples: *n,
                    share: round1(pct(*n, site.samples)),
                })
                .collect(),
            reason,
        });
    }
    out
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

struct Context<'a> {
    table: &'static OpcodeTable,
    base: &'a str,
    argument: Option<&'a str>,
    /// The base name of the instruction before the site.
    prev: Option<&'a str>,
    unspecialized: f64,
}

impl Context<'_> {
    fn version(&self) -> String {
        format!("{}.{}", self.table.major, self.table.minor)
    }

    /// The family's specialized forms, without the family prefix.
    fn suffixes(&self) -> Vec<String> {
        specialized_forms(self.table, self.base)
            .iter()
            .map(|f| suffix(self.base, f))
            .collect()
    }

    fn forms_list(&self) -> String {
        specialized_forms(self.table, self.base).join(", ")
    }

    fn what(&self) -> String {
        match self.argument {
            Some(a) if self.base.contains("ATTR") => format!("{} .{}", self.base, bare(a)),
            Some(a) => format!("{} {}", self.base, bare(a)),
            None => self.base.to_string(),
        }
    }
}

/// A name argument without `dis`'s `NULL + ` decorations.
fn bare(a: &str) -> &str {
    a.trim_start_matches("NULL|self + ")
        .trim_start_matches("NULL + ")
        .trim_end_matches(" + NULL|self")
        .trim_end_matches(" + NULL")
}

fn suffix(base: &str, form: &str) -> String {
    form.strip_prefix(base)
        .and_then(|s| s.strip_prefix('_'))
        .unwrap_or(form)
        .to_string()
}

/// What a specialized form says about the value or object it saw.
fn describe(base: &str, form: &str) -> String {
    let s = suffix(base, form);
    let attr = |s: &str| -> Option<&'static str> {
        Some(match s {
            "INSTANCE_VALUE" => "instances keeping their attributes inline",
            "SLOT" => "instances of a class with __slots__",
            "WITH_HINT" | "WITH_DICT" => "instances with their own __dict__",
            "MODULE" => "a module",
            "CLASS" | "CLASS_WITH_METACLASS_CHECK" => "a class",
            "PROPERTY" => "a property",
            "GETATTRIBUTE_OVERRIDDEN" => "a class overriding __getattribute__",
            "METHOD_WITH_VALUES" | "METHOD_NO_DICT" | "METHOD_LAZY_DICT" => "a method",
            "NONDESCRIPTOR_WITH_VALUES" | "NONDESCRIPTOR_NO_DICT" => {
                "a plain class attribute read through an instance"
            }
            _ => return None,
        })
    };
    fn ty(t: &str) -> &str {
        match t {
            "INT" => "int",
            "FLOAT" => "float",
            "UNICODE" | "STR" | "USTR" => "str",
            "LIST" => "list",
            "TUPLE" => "tuple",
            "DICT" => "dict",
            "SLICE" => "slice",
            other => other,
        }
    }
    let described = match base {
        "LOAD_ATTR" | "LOAD_METHOD" | "STORE_ATTR" => attr(&s).map(String::from),
        "BINARY_OP" => {
            let op = [
                ("INPLACE_ADD_", "+="),
                ("ADD_", "+"),
                ("SUBTRACT_", "-"),
                ("MULTIPLY_", "*"),
            ]
            .iter()
            .find_map(|(p, o)| s.strip_prefix(p).map(|t| (*o, t)));
            match op {
                Some((o, t)) => Some(format!("{} {o} {}", ty(t), ty(t))),
                None if s == "EXTEND" => Some("an extended pair (e.g. int with float)".into()),
                None => s.strip_prefix("SUBSCR_").map(|t| match t {
                    "DICT" => "dict[key]".to_string(),
                    "GETITEM" => "a class's __getitem__".to_string(),
                    t => match t.split_once('_') {
                        Some((c, i)) => format!("{}[{}]", ty(c), ty(i).to_lowercase()),
                        None => t.to_lowercase(),
                    },
                }),
            }
        }
        "COMPARE_OP" => Some(format!("{} operands", ty(s.trim_end_matches("_JUMP")))),
        "FOR_ITER" => Some(format!("a {}", ty(&s).to_lowercase())),
        "CALL" | "PRECALL" | "CALL_KW" => Some(match s.as_str() {
            "PY_EXACT_ARGS" | "KW_PY" | "PY_GENERAL" => "a Python function".into(),
            "PY_WITH_DEFAULTS" => "a Python function using its defaults".into(),
            "BOUND_METHOD_EXACT_ARGS" | "BOUND_METHOD_GENERAL" | "KW_BOUND_METHOD" => {
                "a bound method".into()
            }
            "ALLOC_AND_ENTER_INIT" => "a Python class (its __init__)".into(),
            "BUILTIN_CLASS" => "a builtin class".into(),
            s if s.contains("BUILTIN") => "a builtin function".into(),
            s if s.contains("METHOD_DESCRIPTOR") => "a method of a builtin type".into(),
            s if s.contains("NON_PY") => "a callable not written in Python".into(),
            other => other.to_lowercase().replace('_', " "),
        }),
        _ => None,
    };
    described.unwrap_or_else(|| s.to_lowercase().replace('_', " "))
}

fn polymorphic_reason(ctx: &Context, forms: &[&(String, u64)]) -> String {
    let kinds: Vec<String> = forms
        .iter()
        .map(|(f, _)| format!("{} ({f})", describe(ctx.base, f)))
        .collect();
    let n = kinds.len();
    let list = kinds.join("; ");
    match ctx.base {
        "LOAD_ATTR" | "LOAD_METHOD" | "STORE_ATTR" => {
            format!(
            "objects of {n} layouts reach this attribute {}: {list}. Its inline cache is keyed \
             on one type version, so each change of type deoptimizes it and it specializes again",
            if ctx.base == "STORE_ATTR" { "store" } else { "load" }
        )
        }
        "BINARY_OP" | "COMPARE_OP" => format!(
            "the operand types change at this site: {list}. The cache holds one type pair, so \
             each change deoptimizes it and it specializes again"
        ),
        "CALL" | "PRECALL" | "CALL_KW" => format!(
            "different kinds of callee reach this call: {list}. It is specialized for one kind \
             at a time, so each change deoptimizes it"
        ),
        "FOR_ITER" => format!(
            "different iterables reach this loop: {list}. It is specialized for one at a time"
        ),
        _ => format!(
            "sampled in {n} specialized forms: {list}. The instruction was rewritten while \
             running: each change of form is a deoptimization and a new specialization"
        ),
    }
}

/// Why a site ran unspecialized on 3.13t: the build does not specialize at all.
fn no_specializer_reason(ctx: &Context) -> String {
    format!(
        "Python {}t (free-threaded) does not specialize: that build switches its specializing \
         interpreter off, so {} runs its generic form whatever its operands (the GIL build of \
         {} has {})",
        ctx.version(),
        ctx.what(),
        ctx.version(),
        ctx.forms_list()
    )
}

fn unspecialized_reason(ctx: &Context) -> String {
    let v = ctx.version();
    let share = format!("{:.0}%", ctx.unspecialized);
    let what = ctx.what();
    match ctx.base {
        "BINARY_OP" => binary_op_reason(ctx, &share),
        "COMPARE_OP" => format!(
            "{what} specializes only when both operands are small ints, both floats or both \
             strs (strs for == and != only): {}; it ran unspecialized in {share} of its samples, so its \
             operands were other or mixed types",
            ctx.forms_list()
        ),
        "LOAD_ATTR" | "LOAD_METHOD" => format!(
            "{what} specializes on the type of the object it reads from (forms: {}); it ran \
             unspecialized in {share} of its samples: the objects change type too often to keep \
             one form, or the attribute is of a kind with no form (found by __getattr__, a \
             descriptor other than a property)",
            ctx.suffixes().join(", ")
        ),
        "STORE_ATTR" => format!(
            "{what} specializes for an instance's inline values, __slots__ or its __dict__ \
             ({}); it ran unspecialized in {share} of its samples: the objects change type, or \
             their class defines __setattr__ or a descriptor for the name",
            ctx.forms_list()
        ),
        "LOAD_GLOBAL" => format!(
            "{what} specializes ({}) while the module's globals and the builtins keep the same \
             keys; it ran unspecialized in {share} of its samples: names were added to or \
             removed from them while this code ran, or the globals are not a plain dict",
            ctx.forms_list()
        ),
        "CALL" | "PRECALL" if matches!(ctx.prev, Some("KW_NAMES")) => format!(
            "this call passes keyword arguments (KW_NAMES before it); Python {v} specializes \
             keyword calls only for C functions that take keywords, so a call with keywords to \
             anything else stays generic ({share} of its samples)"
        ),
        "CALL" | "PRECALL" | "CALL_KW" => format!(
            "{} specializes for one kind of callee at a time ({}); it ran unspecialized in \
             {share} of its samples: the callee changes between calls, or the call has a shape \
             with no form in Python {v} (such as *args or **kwargs)",
            ctx.base,
            ctx.suffixes().join(", ")
        ),
        "FOR_ITER" => format!(
            "FOR_ITER specializes for {}; it ran unspecialized in {share} of its samples: the \
             loop iterates something else (a dict, set, str, file or iterator class)",
            ctx.suffixes()
                .iter()
                .map(|s| s.to_lowercase())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "BINARY_SUBSCR" => format!(
            "BINARY_SUBSCR specializes for {}; it ran unspecialized in {share} of its samples: \
             another container or index type (a slice, a negative or large index)",
            ctx.suffixes().join(", ")
        ),
        "TO_BOOL" => format!(
            "TO_BOOL specializes for {}; it ran unspecialized in {share} of its samples: a \
             value of another type is tested for truth",
            ctx.suffixes().join(", ").to_lowercase().replace('_', " ")
        ),
        "CONTAINS_OP" => format!(
            "CONTAINS_OP specializes `in` for dicts and sets; it ran unspecialized in {share} \
             of its samples: `in` on another container (a list, tuple or str)"
        ),
        "UNPACK_SEQUENCE" => format!(
            "UNPACK_SEQUENCE specializes for tuples and lists ({}); it ran unspecialized in \
             {share} of its samples: another iterable is unpacked",
            ctx.forms_list()
        ),
        _ => format!(
            "{} specializes into {}; it ran unspecialized in {share} of its samples",
            ctx.base,
            ctx.forms_list()
        ),
    }
}

/// What the version's `BINARY_OP` forms cover, from their names: `+ (int, float, str),
/// - (int, float), ...`.
fn covered_operators(forms: &[&str]) -> String {
    let mut by: Vec<(&str, Vec<String>)> = Vec::new();
    for f in forms {
        let s = suffix("BINARY_OP", f);
        let found = [
            ("INPLACE_ADD_", "+="),
            ("ADD_", "+"),
            ("SUBTRACT_", "-"),
            ("MULTIPLY_", "*"),
            ("SUBSCR_", "[]"),
        ]
        .iter()
        .find_map(|(p, o)| s.strip_prefix(p).map(|t| (*o, t.to_string())));
        let Some((op, _)) = found else {
            continue;
        };
        let ty = describe("BINARY_OP", f);
        let ty = if op == "[]" {
            ty
        } else {
            ty.split(' ').next().unwrap_or("").to_string()
        };
        match by.iter_mut().find(|e| e.0 == op) {
            Some(e) if e.1.contains(&ty) => {}
            Some(e) => e.1.push(ty),
            None => by.push((op, vec![ty])),
        }
    }
    by.iter()
        .map(|(op, tys)| format!("{op} ({})", tys.join(", ")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn binary_op_reason(ctx: &Context, share: &str) -> String {
    let v = ctx.version();
    let forms = specialized_forms(ctx.table, "BINARY_OP");
    let extend = forms.contains(&"BINARY_OP_EXTEND");
    let op = ctx.argument.map(|a| {
        if a != "==" && a.ends_with('=') {
            &a[..a.len() - 1]
        } else {
            a
        }
    });
    let key = match op {
        Some("+") => Some("ADD_"),
        Some("-") => Some("SUBTRACT_"),
        Some("*") => Some("MULTIPLY_"),
        Some("[]") => Some("SUBSCR_"),
        _ => None,
    };
    let own: Vec<&str> = match key {
        Some(k) => forms
            .iter()
            .copied()
            .filter(|f| {
                let s = suffix("BINARY_OP", f);
                s.starts_with(k) || (k == "ADD_" && s.starts_with("INPLACE_ADD_"))
            })
            .collect(),
        None => Vec::new(),
    };
    let Some(op) = op else {
        return format!(
            "BINARY_OP specializes into {}; it ran unspecialized in {share} of its samples",
            forms.join(", ")
        );
    };
    if own.is_empty() {
        let covered = covered_operators(&forms);
        return if extend {
            format!(
                "Python {v} has no dedicated specialized form of BINARY_OP for `{op}` (they \
                 cover {covered}); BINARY_OP_EXTEND covers only some other type pairs, not the \
                 operands seen here, so it ran unspecialized ({share} of its samples)"
            )
        } else {
            format!(
                "Python {v} has no specialized form of BINARY_OP for `{op}` (they cover \
                 {covered}): it always runs the generic form ({share} of its samples)"
            )
        };
    }
    let types: Vec<String> = own.iter().map(|f| describe("BINARY_OP", f)).collect();
    format!(
        "BINARY_OP `{op}` specializes only for {}{}; it ran unspecialized in {share} of its \
         samples, so its operands were other or mixed types (an int with a float is mixed)",
        types.join(", "),
        if extend {
            " and the pairs BINARY_OP_EXTEND covers"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::opcodes::table_for;

    #[test]
    fn what_can_specialize_comes_from_the_tables() {
        let t = table_for(3, 12, false).expect("3.12 table");
        for base in ["LOAD_ATTR", "BINARY_OP", "CALL", "FOR_ITER", "LOAD_GLOBAL"] {
            assert!(can_specialize(t, base), "{base}");
        }
        for base in [
            "COPY",
            "SWAP",
            "RESUME",
            "JUMP_BACKWARD",
            "LOAD_FAST",
            "STORE_FAST",
        ] {
            assert!(!can_specialize(t, base), "{base}");
        }
        assert!(is_superinstruction(t, "STORE_FAST__LOAD_FAST"));
        assert_eq!(
            state(Some(t), "STORE_FAST__LOAD_FAST", "STORE_FAST"),
            State::Plain
        );
        assert_eq!(
            state(Some(t), "LOAD_ATTR", "LOAD_ATTR"),
            State::Unspecialized
        );
        assert_eq!(
            state(Some(t), "LOAD_ATTR_SLOT", "LOAD_ATTR"),
            State::Specialized
        );
        assert_eq!(
            state(Some(t), "CALL_NO_KW_BUILTIN_O", "CALL"),
            State::CallsC
        );
        assert_eq!(
            state(Some(t), "INSTRUMENTED_CALL", "CALL"),
            State::Instrumented
        );
        let t311 = table_for(3, 11, false).expect("3.11 table");
        assert_eq!(
            state(Some(t311), "LOAD_ATTR_ADAPTIVE", "LOAD_ATTR"),
            State::Unspecialized
        );
        let t310 = table_for(3, 10, false).expect("3.10 table");
        assert_eq!(state(Some(t310), "LOAD_ATTR", "LOAD_ATTR"), State::Plain);
    }
}
