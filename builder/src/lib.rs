//! haseed: site inventory -> Wasm policy chain -> checked plan -> rendered artifacts.
pub mod contract;
