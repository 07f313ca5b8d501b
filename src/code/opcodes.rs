//! Opcode tables (stub, being written).
