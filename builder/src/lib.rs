//! haseed: site inventory -> Wasm policy chain -> checked plan -> rendered artifacts.
//!
//! One module per stage of the flow. Pure stages (inventory, check, render,
//! view) take values and return values; files, processes and devices are
//! touched only at the edges (cli, output, validate, policy's compile cache).
pub mod apply;
pub mod aws;
pub mod check;
pub mod cli;
pub mod contract;
pub mod day2;
pub mod diag;
pub mod envelope;
#[doc(hidden)]
pub mod fuzzing;
pub mod image;
pub mod interrupt;
pub mod inventory;
pub mod kubernetes;
pub mod lab;
pub mod output;
pub mod pipeline;
pub mod plugin_test;
pub mod policy;
pub mod render;
pub mod term;
pub mod validate;
pub mod view;
