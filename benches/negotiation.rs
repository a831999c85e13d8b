//! Placeholder; the criterion benches land with the bench work.
fn main() {}
