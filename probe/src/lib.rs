//! The varlink client of `probe`, as a library so that other programs in the workspace (the
//! benchmark and the soak test) talk to the shim exactly the way `probe` does.

pub mod client;
