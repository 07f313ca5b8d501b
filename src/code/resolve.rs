//! Frame resolution: a raw frame (code object address, instruction) and its decoded code
//! object → the frame a profile records: function, file, line, and with an opcode table
//! the instruction executing (specialized name and base).

use crate::code::opcodes::OpcodeTable;
use crate::code::CodeInfo;
use crate::process::Memory;
use crate::profile::Frame;
use crate::runtime::layout::{FrameKind, Layout};
use crate::walker::{RawFrame, WalkError};

/// Where the bytecode the frame executes starts: the code object's own (`co_code_adaptive`
/// 3.11+, `co_code` before), or on 3.14+ free-threaded builds the executing thread's copy
/// (`co_tlbc[tlbc_index]`, found by the walker).
pub fn bytecode_start(info: &CodeInfo, rf: &RawFrame) -> u64 {
    if rf.bytecode != 0 {
        rf.bytecode
    } else {
        info.code_start
    }
}

/// The byte offset (as `dis` numbers it) of the instruction a frame is executing, or
/// None when the frame has not started.
pub fn instruction_offset(layout: &Layout, info: &CodeInfo, rf: &RawFrame) -> Option<u32> {
    match layout.frame_kind {
        FrameKind::Object => {
            let lasti = rf.instr as i64 as i32;
            if lasti < 0 {
                return None;
            }
            // 3.10 counts code units; earlier versions count bytes.
            let scale = if (layout.major, layout.minor) >= (3, 10) {
                2
            } else {
                1
            };
            Some((lasti as u32).saturating_mul(scale))
        }
        FrameKind::Interpreter => {
            let start = bytecode_start(info, rf);
            if rf.instr < start {
                return None;
            }
            let off = rf.instr - start;
            if off >= info.code_len.max(2) || !off.is_multiple_of(2) {
                return None;
            }
            Some(off as u32)
        }
    }
}

/// Is this 3.11+ frame still being set up (CPython's `_PyFrame_IsIncomplete`)?
fn incomplete(layout: &Layout, info: &CodeInfo, rf: &RawFrame) -> bool {
    const OWNED_BY_GENERATOR: u8 = 1;
    layout.frame_kind == FrameKind::Interpreter
        && rf.owner != OWNED_BY_GENERATOR
        && rf.instr < bytecode_start(info, rf) + 2 * info.first_traceable as u64
}

/// A raw frame and its code object → the frame a profile records (None for a frame
/// still being set up). With an opcode table, the instruction executing is read from the
/// target's live bytecode (3.11+: quickened, so specializations show as they happen).
pub fn resolve_frame(
    layout: &Layout,
    info: &CodeInfo,
    rf: &RawFrame,
    table: Option<&OpcodeTable>,
    mem: &dyn Memory,
) -> Result<Option<Frame>, WalkError> {
    resolve_frame_with(layout, info, rf, table, None, mem)
}

/// `resolve_frame` with the live opcode already read (`live_op`, from the bytecode at
/// [`bytecode_start`]), as the sampler does for all frames of a thread in one system call.
pub fn resolve_frame_with(
    layout: &Layout,
    info: &CodeInfo,
    rf: &RawFrame,
    table: Option<&OpcodeTable>,
    live_op: Option<u8>,
    mem: &dyn Memory,
) -> Result<Option<Frame>, WalkError> {
    if incomplete(layout, info, rf) {
        return Ok(None);
    }
    let offset = instruction_offset(layout, info, rf);
    let mut frame = Frame {
        function: info.name.clone(),
        file: info.filename.clone(),
        first_line: info.first_line,
        line: info.first_line,
        offset: None,
        opcode: None,
        base_opcode: None,
        object: None,
    };
    let Some(mut off) = offset else {
        return Ok(Some(frame));
    };
    if let Some(table) = table {
        // A caller's instruction pointer may sit inside its CALL's inline cache (3.11/3.12)
        // or on an EXTENDED_ARG prefix: report the instruction that owns it.
        if let Some(owner) = info.owner(off) {
            off = owner;
            let op = if let Some(op) = live_op {
                op
            } else if layout.code_adaptive.is_some() {
                mem.read_u8(bytecode_start(info, rf) + off as u64)?
            } else {
                info.bytecode.get(off as usize).copied().unwrap_or(0)
            };
            let (name, mut base) =
                opcode_names(table, op, info.bytecode.get(off as usize).copied());
            if !table.has_static_base(op) {
                // Instrumented: the real instruction sits in the code object's side tables.
                if let Some(orig) =
                    crate::code::original_opcode(mem, layout, table, rf.code, op, off as usize)
                {
                    base = table.base_name(orig);
                }
            }
            frame.offset = Some(off);
            frame.opcode = Some(name.to_string());
            frame.base_opcode = Some(base.to_string());
        }
    }
    frame.line = info.line_at(layout, off).unwrap_or(0);
    Ok(Some(frame))
}

/// The executed opcode's name and its base. An opcode whose real instruction lives in a
/// side table (`INSTRUMENTED_LINE`, `INSTRUMENTED_INSTRUCTION`, `ENTER_EXECUTOR`) takes
/// its base from the bytecode as first read, when that had a real instruction there.
pub fn opcode_names(
    table: &OpcodeTable,
    op: u8,
    first_seen: Option<u8>,
) -> (&'static str, &'static str) {
    let name = table.name(op);
    if table.has_static_base(op) {
        return (name, table.base_name(op));
    }
    match first_seen {
        Some(orig) if table.has_static_base(orig) && table.is_defined(orig) => {
            (name, table.base_name(orig))
        }
        _ => (name, name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::layouts::builtin;

    /// On 3.14t+ the offset counts from the executing thread's copy of the bytecode.
    #[test]
    fn offset_counts_from_the_threads_copy() {
        let l = builtin(3, 14, true).expect("3.14t table");
        let info = CodeInfo {
            id: 1,
            name: "f".into(),
            filename: "f.py".into(),
            first_line: 1,
            line_table: Vec::new(),
            code_start: 0x1000_0000,
            code_len: 64,
            first_traceable: 0,
            bytecode: Vec::new(),
            owners: Vec::new(),
            symbols: None,
            fingerprint: [0; 4],
        };
        let mut rf = RawFrame {
            frame: 0,
            code: 0x1000_0000 - 200,
            instr: 0x2000_0000 + 10,
            owner: 0,
            tlbc_index: 1,
            bytecode: 0x2000_0000,
            entry: true,
        };
        assert_eq!(instruction_offset(l, &info, &rf), Some(10));
        // Unresolved copy: the pointer is not in the code object's own bytecode.
        rf.bytecode = 0;
        assert_eq!(instruction_offset(l, &info, &rf), None);
        rf.instr = info.code_start + 12;
        assert_eq!(instruction_offset(l, &info, &rf), Some(12));
    }
}
