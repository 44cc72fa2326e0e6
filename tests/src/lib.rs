//! End-to-end test helpers for glick: corpora of trees and the oracles that check images.
//!
//! - [`corpus`]: trees as data ([`corpus::Spec`]), written to disk by [`corpus::materialize`];
//!   named cases and random trees.
//! - [`tree`]: what a reader sees ([`tree::Snapshot`]), what an image must show
//!   ([`tree::Expected`]) and the comparisons.
//! - [`oracle`]: e2fsck, debugfs, mke2fs, the kernel (loop mounts) and ext4-view.
//! - [`image`]: building images with glick's writer (library or `glick-mkext2`).
//! - [`ours`]: glick's own reader as a view of the tree, plus checks of its API.
//! - [`check`]: the whole battery of oracles for one tree ([`check::check_spec`]).
//! - [`tools`]: running external tools; failing clearly when one is missing.
//! - [`desktop`]: a private X display, session bus, notification daemon and file manager,
//!   screenshots, and the thumbnail cache.
//!
//! Add a module by adding one `pub mod` line below.

pub mod check;
pub mod corpus;
pub mod desktop;
pub mod image;
pub mod oracle;
pub mod ours;
pub mod runtime;
pub mod tools;
pub mod tree;
