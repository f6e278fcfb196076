//! The `export-center` binary.
fn main() {}
