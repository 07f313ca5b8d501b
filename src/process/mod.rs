//! Process access: the `Memory` trait and its implementations.

pub mod memory;
pub use memory::{Memory, MemoryError, FakeMemory};
