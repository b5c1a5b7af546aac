//! Domain types to and from `sidescan.v1` messages.
