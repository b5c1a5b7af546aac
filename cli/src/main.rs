//! sidescan CLI
fn main() {}
