//! pyprof: a sampling profiler for live CPython processes.
//!
//! The pipeline runs in one direction, one module per stage:
//! `process` (memory, maps, ELF) → `runtime` (find `_PyRuntime`, version, `Layout`) →
//! `walker` (threads and frames) → `code` (code objects, line tables, opcodes) →
//! `sampler` (fixed-rate clock) → `profile` (aggregation) → `output` (formats).

pub mod code;
pub mod dump;
pub mod output;
pub mod process;
pub mod profile;
pub mod record;
pub mod runtime;
pub mod sampler;
pub mod top;
pub mod walker;
