//! Process access: the `Memory` trait and its implementations (live process, in-memory
//! fake), memory maps, and ELF files the target has mapped. Nothing above this module
//! touches the target except through `Memory`.

pub mod btf;
pub mod elf;
pub mod live;
pub mod maps;
pub mod memory;
pub mod native;
pub mod places;
pub mod ptrace;
pub mod snapshot;
pub mod threads;

pub use live::LiveMemory;
pub use maps::MapRange;
pub use memory::{FakeMemory, Memory, MemoryError};
