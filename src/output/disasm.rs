//! Instruction arguments as `dis` shows them, from a recorded code object: names,
//! constants, local and cell variables, comparison and binary operators, jump targets
//! (`LOAD_GLOBAL 1 (NULL + len)`, `COMPARE_OP 2 (<)`, `BINARY_OP 5 (*)`,
//! `POP_JUMP_IF_FALSE 11 (to 136)`), following each CPython version's encoding of the
//! argument (3.11+ `LOAD_GLOBAL` and 3.12+ `LOAD_ATTR` keep a flag in the low bit, 3.12+
//! `COMPARE_OP` keeps the operator in the high bits, 3.13+ pairs two locals in one
//! argument).

use crate::code::opcodes::{flags, Instr, OpcodeTable};
use crate::profile::CodeSnapshot;

/// What the arguments of one code object index.
#[derive(Clone, Copy, Debug, Default)]
pub struct Symbols<'a> {
    pub names: &'a [String],
    pub consts: &'a [String],
    pub locals: &'a [String],
    pub cells: &'a [String],
}

impl<'a> Symbols<'a> {
    pub fn of(c: &'a CodeSnapshot) -> Symbols<'a> {
        Symbols {
            names: &c.names,
            consts: &c.consts,
            locals: &c.locals,
            cells: &c.cells,
        }
    }

    /// Whether anything was recorded (profiles written before names were kept have none).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.consts.is_empty() && self.locals.is_empty()
    }
}

/// `BINARY_OP`'s operators by argument (`_nb_ops`; 26 is 3.14's subscript).
const NB_OPS: [&str; 27] = [
    "+", "&", "//", "<<", "@", "*", "%", "|", "**", ">>", "-", "/", "^", "+=", "&=", "//=", "<<=",
    "@=", "*=", "%=", "|=", "**=", ">>=", "-=", "/=", "^=", "[]",
];

/// `dis.cmp_op`: up to 3.8 it also held `in`, `is` and exception matching.
const CMP_OPS: [&str; 12] = [
    "<",
    "<=",
    "==",
    "!=",
    ">",
    ">=",
    "in",
    "not in",
    "is",
    "is not",
    "exception match",
    "BAD",
];

/// The `dis` offset a jump goes to.
pub fn jump_target(table: &OpcodeTable, ins: &Instr) -> Option<u32> {
    let f = table.flags(ins.base);
    if f & (flags::JREL | flags::JABS | flags::JBACK) == 0 {
        return None;
    }
    let arg = ins.arg as i64;
    let unit = if table.is_wordcode() && (table.major, table.minor) >= (3, 10) {
        2
    } else {
        1
    };
    let next = ins.end_offset as i64;
    let t = if f & flags::JABS != 0 {
        arg * unit
    } else if f & flags::JBACK != 0 {
        next - arg * unit
    } else {
        next + arg * unit
    };
    (t >= 0).then_some(t as u32)
}

/// What `dis` puts in parentheses after the argument (`argrepr`), when it is known.
pub fn argrepr(table: &OpcodeTable, ins: &Instr, sym: &Symbols) -> Option<String> {
    if !ins.has_arg {
        return None;
    }
    if let Some(t) = jump_target(table, ins) {
        return Some(format!("to {t}"));
    }
    let v = (table.major, table.minor);
    let arg = ins.arg as usize;
    let f = table.flags(ins.base);
    let base = ins.base_name;
    let get = |list: &[String], i: usize| list.get(i).cloned();
    if f & flags::CONST != 0 {
        return get(sym.consts, arg);
    }
    if f & flags::NAME != 0 {
        return match base {
            "LOAD_GLOBAL" if v >= (3, 11) => {
                get(sym.names, arg >> 1).map(|n| match (arg & 1 == 1, v >= (3, 13)) {
                    (false, _) => n,
                    (true, false) => format!("NULL + {n}"),
                    (true, true) => format!("{n} + NULL"),
                })
            }
            "LOAD_ATTR" if v >= (3, 12) => {
                get(sym.names, arg >> 1).map(|n| method_load(n, arg & 1 == 1, v))
            }
            "LOAD_SUPER_ATTR" => get(sym.names, arg >> 2).map(|n| method_load(n, arg & 1 == 1, v)),
            _ => get(sym.names, arg),
        };
    }
    if f & flags::LOCAL != 0 {
        let pair = matches!(
            base,
            "LOAD_FAST_LOAD_FAST"
                | "STORE_FAST_LOAD_FAST"
                | "STORE_FAST_STORE_FAST"
                | "LOAD_FAST_BORROW_LOAD_FAST_BORROW"
        );
        if pair {
            let a = get(sym.locals, arg >> 4)?;
            let b = get(sym.locals, arg & 15)?;
            return Some(format!("{a}, {b}"));
        }
        return get(sym.locals, arg);
    }
    if f & flags::FREE != 0 {
        return if v >= (3, 11) {
            get(sym.locals, arg)
        } else {
            get(sym.cells, arg)
        };
    }
    if f & flags::COMPARE != 0 {
        return if v >= (3, 13) {
            CMP_OPS.get(arg >> 5).map(|op| {
                if arg & 16 != 0 {
                    format!("bool({op})")
                } else {
                    op.to_string()
                }
            })
        } else if v >= (3, 12) {
            CMP_OPS.get(arg >> 4).map(|s| s.to_string())
        } else {
            CMP_OPS.get(arg).map(|s| s.to_string())
        };
    }
    let pick = |list: &[&str]| list.get(arg).map(|s| s.to_string());
    match base {
        "BINARY_OP" => pick(&NB_OPS),
        "IS_OP" => Some(if arg == 0 { "is" } else { "is not" }.into()),
        "CONTAINS_OP" => Some(if arg == 0 { "in" } else { "not in" }.into()),
        "FORMAT_VALUE" => {
            let mut s = ["", "str", "repr", "ascii"][arg & 3].to_string();
            if arg & 4 != 0 {
                s.push_str(", with format");
            }
            (!s.is_empty()).then_some(s)
        }
        "CONVERT_VALUE" => pick(&["", "str", "repr", "ascii"]).filter(|s| !s.is_empty()),
        "MAKE_FUNCTION" | "SET_FUNCTION_ATTRIBUTE" => {
            let names = [
                "defaults",
                "kwdefaults",
                "annotations",
                "closure",
                "annotate",
            ];
            let set: Vec<&str> = names
                .iter()
                .enumerate()
                .filter(|(i, _)| arg & (1 << i) != 0)
                .map(|(_, n)| *n)
                .collect();
            (!set.is_empty()).then(|| set.join(", "))
        }
        "CALL_INTRINSIC_1" => pick(&INTRINSIC_1),
        "CALL_INTRINSIC_2" => pick(&INTRINSIC_2),
        "LOAD_SPECIAL" => pick(&["__enter__", "__exit__", "__aenter__", "__aexit__"]),
        "LOAD_COMMON_CONSTANT" => pick(&[
            "AssertionError",
            "NotImplementedError",
            "tuple",
            "all",
            "any",
            "list",
            "set",
            "None",
            "''",
            "True",
            "False",
            "-1",
        ]),
        _ => None,
    }
}

/// 3.12+ `CALL_INTRINSIC_1` / `_2` functions (`_opcode.get_intrinsic1_descs()`).
const INTRINSIC_1: [&str; 12] = [
    "INTRINSIC_1_INVALID",
    "INTRINSIC_PRINT",
    "INTRINSIC_IMPORT_STAR",
    "INTRINSIC_STOPITERATION_ERROR",
    "INTRINSIC_ASYNC_GEN_WRAP",
    "INTRINSIC_UNARY_POSITIVE",
    "INTRINSIC_LIST_TO_TUPLE",
    "INTRINSIC_TYPEVAR",
    "INTRINSIC_PARAMSPEC",
    "INTRINSIC_TYPEVARTUPLE",
    "INTRINSIC_SUBSCRIPT_GENERIC",
    "INTRINSIC_TYPEALIAS",
];
const INTRINSIC_2: [&str; 6] = [
    "INTRINSIC_2_INVALID",
    "INTRINSIC_PREP_RERAISE_STAR",
    "INTRINSIC_TYPEVAR_WITH_BOUND",
    "INTRINSIC_TYPEVAR_WITH_CONSTRAINTS",
    "INTRINSIC_SET_FUNCTION_TYPE_PARAMS",
    "INTRINSIC_SET_TYPEPARAM_DEFAULT",
];

fn method_load(name: String, method: bool, v: (u8, u8)) -> String {
    match (method, v >= (3, 13)) {
        (false, _) => name,
        (true, false) => format!("NULL|self + {name}"),
        (true, true) => format!("{name} + NULL|self"),
    }
}

/// The argument column as `dis` prints it: `5 (*)`, `to 42`, `3`, or nothing.
pub fn arg_text(table: &OpcodeTable, ins: &Instr, sym: &Symbols) -> String {
    let Some(arg) = ins.dis_arg() else {
        return String::new();
    };
    match argrepr(table, ins, sym) {
        Some(r) if r.starts_with("to ") => r,
        Some(r) => format!("{arg} ({r})"),
        None => arg.to_string(),
    }
}
