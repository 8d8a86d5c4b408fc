//! haseed: site inventory -> Wasm policy chain -> checked plan -> rendered artifacts.
pub mod contract;
pub mod diag;
pub mod inventory;
pub mod validate;
