//! Line tables (stub, being written).
