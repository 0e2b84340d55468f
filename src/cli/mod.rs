//! One file per verb group. Later verb groups (run, exec, image, ...) go beside these.

pub mod commit;
pub mod container;
pub mod cp;
pub mod explain;
pub mod image;
pub mod layers;
pub mod mount;
pub mod trace;
pub mod volume;
