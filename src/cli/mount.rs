//! `strata mount` and `strata umount`: the arguments become a request; daemon/ does the rest.

pub use crate::daemon::{mount, umount, umount_helper, MountRequest};
