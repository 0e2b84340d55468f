//! strata's parsers, the same source files the binary is built from, for the fuzz targets: each
//! module below is a directory of ../src, holding only the files the parsers need.
#![allow(dead_code, unused_imports)]

// Through a directory module, so that sys.rs finds its own submodules (src/sys/xattr.rs).
#[path = "../../src"]
pub mod src {
    pub mod sys;
}
pub use src::sys;

#[path = "../../src/daemon"]
pub mod daemon {
    pub mod options;
}

#[path = "../../src/volume"]
pub mod volume {
    pub mod spec;
}

#[path = "../../src/union"]
pub mod union {
    pub mod idmap;
    pub mod layer;

    /// The ACL entry tags src/union/idmap.rs maps, as src/union/acl.rs (which needs the whole
    /// union) defines them.
    pub mod acl {
        pub const USER: u16 = 0x02;
        pub const GROUP: u16 = 0x08;
    }

    /// What the tar unpacker takes from the union's xattr module (src/union/xattr.rs, which
    /// needs the whole union): its override xattr, written as that module writes it.
    pub mod xattr {
        use std::ffi::OsStr;

        use crate::sys::{self, Res};

        pub const OVERRIDE_XATTR: &str = "user.strata.override_stat";

        pub fn set_override(dfd: i32, name: &OsStr, uid: u32, gid: u32, mode: u32) -> Res<()> {
            let p = sys::xattr_path(dfd, name)?;
            let v = format!("{uid}:{gid}:0{mode:o}");
            sys::lsetxattr(&p, OsStr::new(OVERRIDE_XATTR), v.as_bytes(), 0)
        }
    }
}

#[path = "../../src/image"]
pub mod image {
    pub mod at;
    pub mod config;
    pub mod digest;
    pub mod docker_manifest;
    pub mod oci_index;
    pub mod reference;
    pub mod split;
    pub mod tar;
}
