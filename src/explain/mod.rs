//! `strata explain` and `strata layers`: what a mount is made of, read from its layers with the
//! union code itself (a second, read-only `Union` over the same directories the daemon serves),
//! so that what is explained is what the mount shows.
//!
//! - view: finding the mount of a path (as df does) and opening its layers read-only;
//! - probe: what one layer holds at one path, in the on-disk formats (whiteouts, opaque
//!   markers, redirects), through union::layer's readers;
//! - path: the explanation of one path; hides: what hides the layers that do not supply it;
//! - stack, svg: the stack of a mount, container or image, for `layers`.

pub mod hides;
pub mod path;
pub mod probe;
pub mod stack;
pub mod svg;
pub mod view;
