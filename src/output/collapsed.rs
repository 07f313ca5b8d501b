//! Collapsed stacks (the format of Brendan Gregg's stackcollapse, py-spy and inferno):
//! one line per distinct stack, root first, frames separated by `;`, then the count.
//! With `--opcodes` the leaf is the instruction, `[OPNAME]`, and below it, when the
//! sampler saw the thread executing native code the instruction called, `<native FILE>`.

use super::{FileNames, RenderOptions};
use crate::profile::{Frame, ProfileData};
use anyhow::Result;
use std::collections::BTreeMap;
use std::io::Write;

/// The label of one frame: `function (file:line)`.
pub fn frame_label(f: &Frame, opts: &RenderOptions, names: &FileNames) -> String {
    let file = names.show(&f.file);
    // `;` separates frames and a trailing ` N` is the count: keep labels unambiguous.
    let clean = |s: &str| s.replace(';', ":");
    if f.is_synthetic() {
        clean(&f.function)
    } else if let Some(place) = f.native_place(!opts.nolineno) {
        format!("{} ({})", clean(&f.function), clean(&place))
    } else if opts.nolineno {
        format!("{} ({})", clean(&f.function), clean(file))
    } else if opts.function {
        format!("{} ({}:{})", clean(&f.function), clean(file), f.first_line)
    } else {
        format!("{} ({}:{})", clean(&f.function), clean(file), f.line)
    }
}

/// Collapsed lines (`stack count`), merged where labels coincide, sorted.
pub fn lines(data: &ProfileData, opts: &RenderOptions) -> Vec<String> {
    let names = FileNames::new(data, opts);
    let labels: Vec<String> = data
        .frames
        .iter()
        .map(|f| frame_label(f, opts, &names))
        .collect();
    let opcode_labels: Vec<Option<String>> = data
        .frames
        .iter()
        .map(|f| f.opcode.as_ref().map(|op| format!("[{op}]")))
        .collect();
    let mut merged: BTreeMap<String, u64> = BTreeMap::new();
    for stack in &data.stacks {
        let mut parts: Vec<&str> = Vec::with_capacity(stack.frames.len() + 3);
        let process_label;
        if let Some(p) = data
            .threads
            .get(stack.thread as usize)
            .and_then(|t| t.process.as_ref())
        {
            process_label = p.replace(';', ":");
            parts.push(&process_label);
        }
        let thread_label;
        if opts.threads {
            thread_label = data
                .threads
                .get(stack.thread as usize)
                .map(|t| t.label().replace(';', ":"))
                .unwrap_or_else(|| "thread ?".into());
            parts.push(&thread_label);
        }
        if stack.truncated {
            parts.push("[truncated]");
        }
        for &id in &stack.frames {
            if let Some(l) = labels.get(id as usize) {
                parts.push(l);
            }
        }
        if let Some(&leaf) = stack.frames.last() {
            if let Some(Some(op)) = opcode_labels.get(leaf as usize) {
                parts.push(op);
                // The native code the instruction was executing, below it.
                if let Some(l) = stack.native.and_then(|n| labels.get(n as usize)) {
                    parts.push(l);
                }
            }
        }
        if parts.is_empty() {
            continue;
        }
        *merged.entry(parts.join(";")).or_insert(0) += stack.count;
    }
    merged
        .into_iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect()
}

pub fn write(data: &ProfileData, opts: &RenderOptions, w: &mut dyn Write) -> Result<()> {
    for line in lines(data, opts) {
        writeln!(w, "{line}")?;
    }
    Ok(())
}
