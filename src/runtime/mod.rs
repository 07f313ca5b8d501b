//! Runtime discovery: find `_PyRuntime`, detect the version, choose a `Layout`.

pub mod layout;
pub mod layouts;
