//! Safe wrappers over the system calls that `nix` and `std` lack; the only `unsafe` code of the
//! workspace lives here.
//!
//! - [`mount`]: the new mount API (`fsopen`, `fsconfig`, `fsmount`, `move_mount`).
//! - [`xattr`]: reading extended attributes without following a final symlink.

pub mod mount;
pub mod xattr;
