//! test helpers

pub mod plugin;
