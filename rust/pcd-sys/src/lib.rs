//! Safe wrappers over the system calls that `nix` and `std` lack; the only `unsafe` code of the
//! workspace lives here.
//!
//! - [`fd`]: marking inherited descriptors close-on-exec.
//! - [`mount`]: the new mount API (`fsopen`, `fsconfig`, `fsmount`, `move_mount`).
//! - [`netns`]: named network namespaces pinned by a bind mount (`ip netns add`).
//! - [`tty`]: a pty master received over a unix socket (`SCM_RIGHTS`), window sizes.
//! - [`xattr`]: reading extended attributes without following a final symlink.

pub mod fd;
pub mod mount;
pub mod netns;
pub mod tty;
pub mod xattr;
