//! What a code object's instruction arguments refer to: `co_names`, `co_consts` (as
//! `repr()` text), the local variable names and, up to 3.10, the cell and free variable
//! names. Read once per code object with opcode capture, so `pyprof annotate` can show
//! arguments as `dis` does (`LOAD_ATTR 0 (x)`, `LOAD_CONST 1 (0.5)`) without the target.
//!
//! Where the tuples are: 3.11+ `co_consts` and `co_names` are the first two fields after
//! `PyObject_VAR_HEAD` (so right after `ob_size`); up to 3.10 they follow `co_code`, then
//! `co_varnames`, `co_freevars`, `co_cellvars` (checked against the layout's own
//! `co_varnames` offset before trusting the order). Every object is checked by its type
//! name before it is read, every tuple and string is bounded; a failed read yields no
//! symbols, never an error for the sample.

use super::{plausible_ptr, read_c_string, read_str};
use crate::process::Memory;
use crate::runtime::layout::Layout;
use crate::runtime::objects::Objects;

/// Most entries read from one tuple.
const MAX_ITEMS: usize = 4096;
/// Longest `repr()` kept for one constant.
const MAX_REPR: usize = 4096;

/// The names and constants a code object's instructions index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodeSymbols {
    pub names: Vec<String>,
    pub consts: Vec<String>,
    /// `co_localsplusnames` (3.11+) or `co_varnames`.
    pub locals: Vec<String>,
    /// ≤3.10: `co_cellvars` followed by `co_freevars`.
    pub cells: Vec<String>,
}

/// Read the symbols of the code object at `addr` (None when its tuples cannot be found).
pub fn read_symbols(mem: &dyn Memory, l: &Layout, addr: u64) -> Option<CodeSymbols> {
    let field = |off: u64| mem.read_u64(addr.wrapping_add(off)).ok();
    let (consts_off, names_off, cells) = match (l.code_adaptive, l.code_code) {
        (Some(_), _) => (l.ob_size as u64 + 8, l.ob_size as u64 + 16, None),
        (None, Some(code)) => {
            let code = code as u64;
            // co_code, co_consts, co_names, co_varnames, co_freevars, co_cellvars.
            let cells = (l.code_varnames as u64 == code + 24).then_some((code + 40, code + 32));
            (code + 8, code + 16, cells)
        }
        (None, None) => return None,
    };
    let names = string_tuple(mem, l, field(names_off)?)?;
    let consts = tuple_items(mem, l, field(consts_off)?)?
        .into_iter()
        .map(|o| fit(const_repr(mem, l, o, 0)))
        .collect();
    let locals = string_tuple(mem, l, field(l.code_varnames as u64)?).unwrap_or_default();
    let cells = match cells {
        Some((cell_off, free_off)) => {
            let mut v = string_tuple(mem, l, field(cell_off)?).unwrap_or_default();
            v.extend(string_tuple(mem, l, field(free_off)?).unwrap_or_default());
            v
        }
        None => Vec::new(),
    };
    Some(CodeSymbols {
        names,
        consts,
        locals,
        cells,
    })
}

fn fit(s: String) -> String {
    if s.chars().count() <= MAX_REPR {
        s
    } else {
        let mut out: String = s.chars().take(MAX_REPR - 1).collect();
        out.push('…');
        out
    }
}

fn type_name(mem: &dyn Memory, l: &Layout, obj: u64) -> Option<String> {
    if !plausible_ptr(obj) {
        return None;
    }
    let ty = mem.read_u64(obj.wrapping_add(l.ob_type as u64)).ok()?;
    if !plausible_ptr(ty) {
        return None;
    }
    let name = mem.read_u64(ty.wrapping_add(l.type_name as u64)).ok()?;
    read_c_string(mem, name, 64).ok()
}

/// The items of a tuple (checked to be one), at most `MAX_ITEMS`.
fn tuple_items(mem: &dyn Memory, l: &Layout, obj: u64) -> Option<Vec<u64>> {
    if type_name(mem, l, obj)? != "tuple" {
        return None;
    }
    let n = mem.read_u64(obj.wrapping_add(l.ob_size as u64)).ok()?;
    if n > MAX_ITEMS as u64 {
        return None;
    }
    if n == 0 {
        return Some(Vec::new());
    }
    let bytes = mem
        .read_vec(obj.wrapping_add(l.tuple_item as u64), n as usize * 8)
        .ok()?;
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
    )
}

fn string_tuple(mem: &dyn Memory, l: &Layout, obj: u64) -> Option<Vec<String>> {
    tuple_items(mem, l, obj)?
        .into_iter()
        .map(|p| read_str(mem, l, p).ok())
        .collect()
}

/// `repr()` of a constant, for the types code objects hold; others by type name.
fn const_repr(mem: &dyn Memory, l: &Layout, obj: u64, depth: u32) -> String {
    let Some(tname) = type_name(mem, l, obj) else {
        return "?".into();
    };
    let header = l.ob_type as u64 + 8; // sizeof(PyObject)
    let text = match tname.as_str() {
        "NoneType" => Some("None".to_string()),
        "bool" => Objects::new(mem, l)
            .read_int(obj)
            .map(|v| if v == 0 { "False" } else { "True" }.to_string()),
        "int" | "long" => Objects::new(mem, l).read_int(obj).map(|v| v.to_string()),
        "float" => mem
            .read_u64(obj + header)
            .ok()
            .map(|b| float_repr(f64::from_bits(b))),
        "str" | "unicode" => read_str(mem, l, obj).ok().map(|s| str_repr(&s)),
        "bytes" => super::read_bytes(mem, l, obj)
            .ok()
            .map(|b| format!("b{}", bytes_repr(&b))),
        "ellipsis" => Some("Ellipsis".into()),
        "tuple" if depth < 3 => tuple_items(mem, l, obj).map(|items| {
            let parts: Vec<String> = items
                .iter()
                .take(32)
                .map(|&o| const_repr(mem, l, o, depth + 1))
                .collect();
            let more = if items.len() > 32 { ", …" } else { "" };
            if parts.len() == 1 {
                format!("({},)", parts[0])
            } else {
                format!("({}{more})", parts.join(", "))
            }
        }),
        "code" => {
            let name = mem
                .read_u64(obj.wrapping_add(l.code_name as u64))
                .ok()
                .and_then(|p| read_str(mem, l, p).ok());
            let file = mem
                .read_u64(obj.wrapping_add(l.code_filename as u64))
                .ok()
                .and_then(|p| read_str(mem, l, p).ok());
            let line = mem
                .read_u32(obj.wrapping_add(l.code_firstlineno as u64))
                .ok();
            name.map(|n| {
                format!(
                    "<code object {n} at {obj:#x}, file \"{}\", line {}>",
                    file.unwrap_or_default(),
                    line.unwrap_or(0)
                )
            })
        }
        _ => None,
    };
    text.unwrap_or_else(|| format!("<{tname}>"))
}

/// Python's `repr()` of a float: shortest round-trip digits, positional for exponents
/// -4..16, else `1e+16` style.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: "1.5e0", "-2.25e-7".
    let e = format!("{x:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mant) = match mant.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mant),
    };
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let s = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{s}")
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        format!(
            "{sign}{m}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    }
}

/// Python's `repr()` of a str.
pub fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::new();
    out.push(quote);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c if c as char == quote => {
                out.push('\\');
                out.push(c as char);
            }
            0x20..=0x7e => out.push(c as char),
            c => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_python_prints_them() {
        for (x, s) in [
            (0.0, "0.0"),
            (1.5, "1.5"),
            (-2.0, "-2.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123456.789, "123456.789"),
            (1e15, "1000000000000000.0"),
        ] {
            assert_eq!(float_repr(x), s, "{x}");
        }
    }

    #[test]
    fn strings_as_python_prints_them() {
        assert_eq!(str_repr("a"), "'a'");
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("a\nb"), "'a\\nb'");
        assert_eq!(bytes_repr(b"x\x00"), "'x\\x00'");
    }
}
