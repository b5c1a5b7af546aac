//! Plugins the suite is checked against.

pub(crate) mod nonconforming;
pub(crate) mod sdk_plugin;
