//! speedscope's JSON file format (<https://www.speedscope.app/file-format-schema.json>),
//! which speedscope opens directly and other viewers import.
//!
//! One `sampled` profile per thread, named by the thread's label; the frames are shared
//! between the profiles (`name` = function, `file`, `line`; no column). Each distinct
//! stack is one sample (frame indexes, root first) weighted by its count, so the unit is
//! `none` (samples) and a profile's `endValue` is its thread's sample count. With
//! `--opcodes` the executing instruction is an extra leaf frame named `[OPNAME]`; stacks
//! cut by `--max-depth` start with a `[truncated]` frame, as in the collapsed output.
//!
//! `RenderOptions::threads` changes nothing here: every thread is already its own
//! profile. `function` labels frames with the function's first line, `nolineno` drops
//! the line, `full_filenames` keeps file names as the interpreter has them.

use super::{FileNames, RenderOptions};
use crate::profile::{Frame, ProfileData};
use anyhow::Result;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

/// The `$schema` every speedscope file names.
pub const SCHEMA_URL: &str = "https://www.speedscope.app/file-format-schema.json";

#[derive(Serialize)]
struct File<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    exporter: String,
    name: &'a str,
    #[serde(rename = "activeProfileIndex")]
    active_profile_index: usize,
    shared: Shared,
    profiles: Vec<SampledProfile>,
}

#[derive(Serialize)]
struct Shared {
    frames: Vec<SsFrame>,
}

#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
struct SsFrame {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<i64>,
}

#[derive(Serialize)]
struct SampledProfile {
    #[serde(rename = "type")]
    kind: &'static str,
    name: String,
    unit: &'static str,
    #[serde(rename = "startValue")]
    start_value: u64,
    #[serde(rename = "endValue")]
    end_value: u64,
    samples: Vec<Vec<usize>>,
    weights: Vec<u64>,
}

/// Interns speedscope frames, so frames that options make identical are shared.
#[derive(Default)]
struct Frames {
    list: Vec<SsFrame>,
    ids: HashMap<SsFrame, usize>,
}

impl Frames {
    fn intern(&mut self, f: SsFrame) -> usize {
        if let Some(&id) = self.ids.get(&f) {
            return id;
        }
        let id = self.list.len();
        self.list.push(f.clone());
        self.ids.insert(f, id);
        id
    }
}

fn file_name(f: &Frame, names: &FileNames) -> String {
    names.show(&f.file).to_string()
}

fn line_of(f: &Frame, opts: &RenderOptions) -> Option<i64> {
    if opts.nolineno {
        None
    } else if opts.function {
        Some(i64::from(f.first_line))
    } else {
        Some(i64::from(f.line))
    }
}

/// Write `data` as a speedscope file.
pub fn write(data: &ProfileData, opts: &RenderOptions, w: &mut dyn Write) -> Result<()> {
    let names = FileNames::new(data, opts);
    let mut frames = Frames::default();
    // Profile frame id -> speedscope frame index, and (made when first used as a leaf)
    // the index of its opcode frame.
    let mut frame_ix: Vec<usize> = Vec::with_capacity(data.frames.len());
    for f in &data.frames {
        frame_ix.push(frames.intern(SsFrame {
            name: f.function.clone(),
            file: Some(file_name(f, &names)),
            line: line_of(f, opts),
        }));
    }
    let mut opcode_ix: HashMap<u32, usize> = HashMap::new();
    let mut truncated_ix: Option<usize> = None;

    // Samples per thread, merged where options made two stacks identical.
    let mut per_thread: BTreeMap<u32, BTreeMap<Vec<usize>, u64>> = BTreeMap::new();
    for stack in &data.stacks {
        let mut sample = Vec::with_capacity(stack.frames.len() + 2);
        if stack.truncated {
            let ix = *truncated_ix.get_or_insert_with(|| {
                frames.intern(SsFrame {
                    name: "[truncated]".into(),
                    file: None,
                    line: None,
                })
            });
            sample.push(ix);
        }
        sample.extend(
            stack
                .frames
                .iter()
                .filter_map(|&id| frame_ix.get(id as usize).copied()),
        );
        if let Some(&leaf) = stack.frames.last() {
            if let Some(f) = data.frames.get(leaf as usize) {
                if let Some(op) = &f.opcode {
                    let ix = *opcode_ix.entry(leaf).or_insert_with(|| {
                        frames.intern(SsFrame {
                            name: format!("[{op}]"),
                            file: Some(file_name(f, &names)),
                            line: line_of(f, opts),
                        })
                    });
                    sample.push(ix);
                    // The native code the instruction was executing, below it.
                    if let Some(&n) = stack.native.and_then(|n| frame_ix.get(n as usize)) {
                        sample.push(n);
                    }
                }
            }
        }
        *per_thread
            .entry(stack.thread)
            .or_default()
            .entry(sample)
            .or_insert(0) += stack.count;
    }

    let mut profiles = Vec::with_capacity(per_thread.len());
    for (thread, samples) in per_thread {
        let name = match data.threads.get(thread as usize) {
            Some(t) => t.label(),
            None => format!("thread #{thread}"),
        };
        let total: u64 = samples.values().sum();
        let (samples, weights): (Vec<Vec<usize>>, Vec<u64>) = samples.into_iter().unzip();
        profiles.push(SampledProfile {
            kind: "sampled",
            name,
            unit: "none",
            start_value: 0,
            end_value: total,
            samples,
            weights,
        });
    }
    // Open on the busiest thread.
    let active_profile_index = profiles
        .iter()
        .enumerate()
        .max_by_key(|(i, p)| (p.end_value, std::cmp::Reverse(*i)))
        .map(|(i, _)| i)
        .unwrap_or(0);

    let file = File {
        schema: SCHEMA_URL,
        exporter: format!("pyprof {}", env!("CARGO_PKG_VERSION")),
        name: &data.meta.target,
        active_profile_index,
        shared: Shared {
            frames: frames.list,
        },
        profiles,
    };
    serde_json::to_writer(&mut *w, &file)?;
    w.write_all(b"\n")?;
    Ok(())
}

#[cfg(test)]
#[path = "speedscope_tests.rs"]
mod tests;
