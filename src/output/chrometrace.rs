//! Chrome's Trace Event Format (the JSON object form, `{"traceEvents": [...]}`), which
//! chrome://tracing, Perfetto and speedscope open.
//!
//! **The time axis is synthetic.** pyprof aggregates samples (it keeps a count per
//! distinct stack, never a timestamp per sample), so this writer lays each thread's
//! stacks out like a flamegraph turned on its side: stacks are merged into a tree by
//! frame label, children sorted by label and placed one after another inside their
//! parent, and every node becomes one complete (`"ph": "X"`) event whose duration is
//! its sample count times the sampling interval (1 sample = 1/rate seconds, written in
//! whole microseconds: boundaries are rounded, so a duration can be off by 1 us). A
//! node's self time is the gap after its last child. So widths are true totals and
//! nesting is true call structure, but the order along the axis and the start times
//! mean nothing about when the code ran: every thread starts at 0.
//!
//! Each thread is a `tid` (its native id when every thread has a distinct one, which
//! the interpreter records from 3.11; else its index in the profile) in `pid` = the
//! target's pid, named by a `thread_name` metadata (`"ph": "M"`) event; the process is
//! named by `process_name`. Event names are the frame labels of the collapsed output
//! (`function (file:line)`); `args` hold the function, file and line (constant per
//! label, so importers that key frames by name and args still merge them). With
//! `--opcodes` the executing instruction is an extra leaf event `[OPNAME]`; stacks cut
//! by `--max-depth` start with `[truncated]`. `otherData` records that the timeline is
//! synthetic.

use super::collapsed::frame_label;
use super::{FileNames, RenderOptions};
use crate::profile::ProfileData;
use anyhow::Result;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;

#[derive(Serialize)]
struct Trace<'a> {
    #[serde(rename = "traceEvents")]
    trace_events: Vec<Event>,
    #[serde(rename = "displayTimeUnit")]
    display_time_unit: &'static str,
    #[serde(rename = "otherData")]
    other_data: OtherData<'a>,
}

#[derive(Serialize)]
struct OtherData<'a> {
    exporter: String,
    target: &'a str,
    python_version: &'a str,
    rate_hz: f64,
    samples: u64,
    timeline: &'static str,
}

#[derive(Serialize)]
struct Event {
    name: String,
    ph: &'static str,
    pid: i64,
    tid: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cat: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dur: Option<u64>,
    args: serde_json::Value,
}

/// What a tree node shows: the label and the details kept in `args`.
#[derive(Clone)]
struct NodeInfo {
    function: String,
    file: Option<String>,
    line: Option<i64>,
}

/// One node of a thread's merged call tree.
#[derive(Default)]
struct Node {
    count: u64,
    info: Option<NodeInfo>,
    children: BTreeMap<String, Node>,
}

impl Node {
    /// Add `count` samples of `path` (root first) under this node (iteratively: stacks
    /// can be thousands of frames deep).
    fn insert(&mut self, path: &[(&str, &NodeInfo)], count: u64) {
        let mut node = self;
        node.count += count;
        for (label, info) in path {
            node = node.children.entry((*label).to_string()).or_default();
            if node.info.is_none() {
                node.info = Some((*info).clone());
            }
            node.count += count;
        }
    }
}

/// Microseconds per sample (1/rate seconds); 100 Hz when the rate is unknown.
fn micros_per_sample(rate_hz: f64) -> f64 {
    let rate = if rate_hz.is_finite() && rate_hz > 0.0 {
        rate_hz
    } else {
        100.0
    };
    1e6 / rate
}

struct Emitter {
    pid: i64,
    tid: u64,
    us: f64,
    events: Vec<Event>,
}

impl Emitter {
    /// Emit the descendants of `root` (which starts at 0), depth first, so events come
    /// in start order with parents before their children. Iterative, for deep stacks.
    fn tree(&mut self, root: &Node) {
        let mut work = vec![(root.children.iter(), 0u64)];
        while let Some((iter, at)) = work.last_mut() {
            let Some((label, child)) = iter.next() else {
                work.pop();
                continue;
            };
            let start = *at;
            *at += child.count;
            self.event(label, child, start);
            work.push((child.children.iter(), start));
        }
    }

    fn micros(&self, samples: u64) -> u64 {
        (samples as f64 * self.us).round() as u64
    }

    fn event(&mut self, label: &str, node: &Node, start: u64) {
        let mut args = serde_json::Map::new();
        if let Some(info) = &node.info {
            args.insert("function".into(), info.function.clone().into());
            if let Some(file) = &info.file {
                args.insert("file".into(), file.clone().into());
            }
            if let Some(line) = info.line {
                args.insert("line".into(), line.into());
            }
        }
        // Boundaries in whole samples, scaled and rounded to whole microseconds: readers
        // compute ends as ts + dur, which is then exact, and rounding is monotonic, so
        // children stay inside their parents and siblings share their boundaries.
        let ts = self.micros(start);
        let end = self.micros(start + node.count);
        self.events.push(Event {
            name: label.to_string(),
            ph: "X",
            pid: self.pid,
            tid: self.tid,
            cat: Some("python"),
            ts: Some(ts),
            dur: Some(end - ts),
            args: serde_json::Value::Object(args),
        });
    }
}

/// Write `data` as a Chrome trace (synthetic timeline; see the module comment).
pub fn write(data: &ProfileData, opts: &RenderOptions, w: &mut dyn Write) -> Result<()> {
    let names = FileNames::new(data, opts);
    let pid = i64::from(data.meta.pid);
    let us = micros_per_sample(data.meta.rate_hz);

    let infos: Vec<(String, NodeInfo)> = data
        .frames
        .iter()
        .map(|f| {
            let file = names.show(&f.file).to_string();
            let line = if opts.nolineno {
                None
            } else if opts.function {
                Some(i64::from(f.first_line))
            } else {
                Some(i64::from(f.line))
            };
            let info = NodeInfo {
                function: f.function.clone(),
                file: Some(file),
                line,
            };
            (frame_label(f, opts, &names), info)
        })
        .collect();
    let opcodes: Vec<Option<(String, NodeInfo)>> = data
        .frames
        .iter()
        .zip(&infos)
        .map(|(f, (_, info))| {
            f.opcode.as_ref().map(|op| {
                let name = format!("[{op}]");
                let info = NodeInfo {
                    function: name.clone(),
                    ..info.clone()
                };
                (name, info)
            })
        })
        .collect();
    let truncated = NodeInfo {
        function: "[truncated]".into(),
        file: None,
        line: None,
    };

    let mut trees: BTreeMap<u32, Node> = BTreeMap::new();
    for stack in &data.stacks {
        let mut path: Vec<(&str, &NodeInfo)> = Vec::with_capacity(stack.frames.len() + 2);
        if stack.truncated {
            path.push(("[truncated]", &truncated));
        }
        for &id in &stack.frames {
            if let Some((label, info)) = infos.get(id as usize) {
                path.push((label, info));
            }
        }
        if let Some(&leaf) = stack.frames.last() {
            if let Some(Some((label, info))) = opcodes.get(leaf as usize) {
                path.push((label, info));
                // The native code the instruction was executing, below it.
                if let Some((label, info)) = stack.native.and_then(|n| infos.get(n as usize)) {
                    path.push((label, info));
                }
            }
        }
        trees
            .entry(stack.thread)
            .or_default()
            .insert(&path, stack.count);
    }

    // Thread ids: native ids when every thread has a distinct one, else indexes.
    let natives: Vec<Option<u64>> = data.threads.iter().map(|t| t.native_id).collect();
    let distinct: HashSet<u64> = natives.iter().flatten().copied().collect();
    let use_native = natives.iter().all(Option::is_some) && distinct.len() == natives.len();
    let tid_of = |thread: u32| -> u64 {
        match natives.get(thread as usize) {
            Some(Some(native)) if use_native => *native,
            _ => u64::from(thread),
        }
    };

    let mut events = vec![Event {
        name: "process_name".into(),
        ph: "M",
        pid,
        tid: 0,
        cat: None,
        ts: None,
        dur: None,
        args: serde_json::json!({ "name": data.meta.target }),
    }];
    for (i, (thread, _)) in trees.iter().enumerate() {
        let name = match data.threads.get(*thread as usize) {
            Some(t) => t.label(),
            None => format!("thread #{thread}"),
        };
        let tid = tid_of(*thread);
        events.push(Event {
            name: "thread_name".into(),
            ph: "M",
            pid,
            tid,
            cat: None,
            ts: None,
            dur: None,
            args: serde_json::json!({ "name": name }),
        });
        events.push(Event {
            name: "thread_sort_index".into(),
            ph: "M",
            pid,
            tid,
            cat: None,
            ts: None,
            dur: None,
            args: serde_json::json!({ "sort_index": i }),
        });
    }
    let mut emitter = Emitter {
        pid,
        tid: 0,
        us,
        events,
    };
    for (thread, tree) in &trees {
        emitter.tid = tid_of(*thread);
        emitter.tree(tree);
    }

    let trace = Trace {
        trace_events: emitter.events,
        display_time_unit: "ms",
        other_data: OtherData {
            exporter: format!("pyprof {}", env!("CARGO_PKG_VERSION")),
            target: &data.meta.target,
            python_version: &data.meta.python_version,
            rate_hz: data.meta.rate_hz,
            samples: data.total_samples(),
            timeline: "synthetic: aggregated samples laid out as a flamegraph \
                       (durations = samples / rate; start times carry no meaning)",
        },
    };
    serde_json::to_writer(&mut *w, &trace)?;
    w.write_all(b"\n")?;
    Ok(())
}

#[cfg(test)]
#[path = "chrometrace_tests.rs"]
mod tests;
