//! Issue-3 benchmark of the alert engine (filled in below).

fn main() {}
