//! Serve an ext2 image read-only over FUSE and mount it without libfuse.
//!
//! This crate is the runtime half of glick, shared by the stub and
//! `glick-shell`:
//!
//! - [`fs::ImageFs`]: the image served through `fuser`, straight from the
//!   bundle's open file, cached by the kernel for long;
//! - [`source::ImageSource`]: how the server reads it: a mapping of the running
//!   bundle (replies go out from the bundle's page cache without a copy), or
//!   `pread` for a bundle that is only open;
//! - [`mount`]: the FUSE rungs of the mount chain (direct `mount(2)`, the
//!   setuid `fusermount3`, an unprivileged user namespace) and lazy detach;
//! - [`launch`]: the whole chain with its last rung (extraction), the
//!   private mountpoint, the helper process (double fork) and its
//!   keepalive lifetime, ending in a [`launch::Root`] ready for `exec`;
//! - `preload`: the helper pushes the file the app runs first (`start`) into
//!   the page cache while the launch finishes;
//! - extraction itself is [`glick_tree`]'s (shared with `glick-extract --tree`).
//!
//! ```no_run
//! use glick_fuse::launch::{self, Image, Options};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let file = std::fs::File::open("/proc/self/exe")?;
//! let image = Image { file, offset: 4096, len: 1 << 20 };
//! let mut root = launch::open_root(image, &Options::from_env()?)?;
//! let env = root.install()?; // fd 1023 = the root, fd 1022 = keepalive
//! # let _ = env; Ok(()) }
//! ```
//!
//! # Errors
//! Each module returns typed errors; [`launch::Error`] gathers them for the
//! binaries, which map them to exit codes.

#![deny(unsafe_code)]

pub mod fs;
pub mod launch;
pub mod mount;
mod preload;
mod server;
pub mod source;
mod sys;
