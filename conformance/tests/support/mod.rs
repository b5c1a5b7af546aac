//! Plugins the suite is checked against.

pub mod nonconforming;
pub mod sdk_plugin;
