//! One file per verb group. Later verb groups (run, exec, volume, image, ...) go beside these.

pub mod mount;
pub mod options;
