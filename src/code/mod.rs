//! Code objects: decoding names, files, line tables and bytecode of a `PyCodeObject`.

pub mod linetable;
pub mod opcodes;
