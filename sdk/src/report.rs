//! Report assembly.
