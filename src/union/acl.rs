//! What a new entry inherits from its directory's default POSIX ACL, as the kernel's
//! posix_acl_create gives it: with a default ACL the umask does not apply, the new entry's
//! access ACL is the default ACL with its owner, group-class (the mask, or the owning group
//! without one) and other entries cut down to the mode asked for, the mode is cut down to
//! them, and a directory takes the default ACL as its own default. Without one, the umask
//! applies. strata writes both ACLs itself: an entry replacing a whiteout is made in the
//! workdir, where the upper's filesystem has no default ACL to inherit.

use std::ffi::OsStr;

use super::Union;
use crate::sys::{self, Res};

pub const ACCESS: &str = "system.posix_acl_access";
pub const DEFAULT: &str = "system.posix_acl_default";

/// The xattrs' format (version 2: a 4-byte header, then 8-byte entries of tag, permissions
/// and id), shared with the id mapping of ACL entries (see idmap).
const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
pub const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
pub const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

/// One of the two POSIX ACL xattrs.
pub fn is_acl_xattr(name: &OsStr) -> bool {
    name == ACCESS || name == DEFAULT
}

/// A new entry's mode and the ACLs it is made with.
#[derive(Debug, PartialEq)]
pub struct Inherited {
    pub mode: u32,
    /// Its access ACL, where the entries are more than the mode can say.
    pub access: Option<Vec<u8>>,
    /// A directory's default ACL (its parent's).
    pub default: Option<Vec<u8>>,
}

/// posix_acl_create for an entry of `mode` (type and permission bits) under the default ACL
/// `default` (the xattr's value, entries in any order as stored).
pub fn inherit(default: &[u8], mode: u32) -> Res<Inherited> {
    if default.len() < 4
        || !(default.len() - 4).is_multiple_of(8)
        || u32::from_le_bytes(default[..4].try_into().unwrap()) != VERSION
    {
        return Err(libc::EINVAL);
    }
    let mut acl = default.to_vec();
    let mut mode = mode;
    let mut extended = false;
    let (mut group_obj, mut mask) = (None, None);
    let perm_at = |i: usize| 4 + i * 8 + 2;
    let n = (acl.len() - 4) / 8;
    for i in 0..n {
        let tag = u16::from_le_bytes([acl[4 + i * 8], acl[4 + i * 8 + 1]]);
        let p = perm_at(i);
        let perm = u16::from_le_bytes([acl[p], acl[p + 1]]) as u32;
        let cut = match tag {
            USER_OBJ => {
                let perm = perm & ((mode >> 6) & 7);
                mode &= !0o700 | (perm << 6);
                Some(perm)
            }
            OTHER => {
                let perm = perm & (mode & 7);
                mode &= !0o007 | perm;
                Some(perm)
            }
            GROUP_OBJ => {
                group_obj = Some(i);
                None
            }
            MASK => {
                mask = Some(i);
                extended = true;
                None
            }
            USER | GROUP => {
                extended = true;
                None
            }
            _ => return Err(libc::EINVAL),
        };
        if let Some(c) = cut {
            acl[p..p + 2].copy_from_slice(&(c as u16).to_le_bytes());
        }
    }
    // The group class: the mask where there is one, else the owning group's entry.
    let Some(g) = mask.or(group_obj) else {
        return Err(libc::EINVAL);
    };
    let p = perm_at(g);
    let perm = u16::from_le_bytes([acl[p], acl[p + 1]]) as u32 & ((mode >> 3) & 7);
    mode &= !0o070 | (perm << 3);
    acl[p..p + 2].copy_from_slice(&(perm as u16).to_le_bytes());
    Ok(Inherited {
        mode,
        access: extended.then_some(acl),
        default: (mode & libc::S_IFMT == libc::S_IFDIR).then(|| default.to_vec()),
    })
}

impl Union {
    /// The mode and ACLs of a new entry of `mode` (type and bits, as asked) made by a caller
    /// with `umask` in upper directory `dirfd`.
    pub(crate) fn inherited(&self, dirfd: i32, mode: u32, umask: u32) -> Res<Inherited> {
        let plain = Inherited {
            mode: mode & !(umask & 0o777),
            access: None,
            default: None,
        };
        if self.opts.show.noacl || mode & libc::S_IFMT == libc::S_IFLNK {
            return Ok(plain);
        }
        let p = sys::xattr_path(dirfd, OsStr::new(""))?;
        match sys::lgetxattr(&p, OsStr::new(DEFAULT)) {
            Ok(v) if v.len() > 4 => inherit(&v, mode),
            Ok(_) | Err(libc::ENODATA) | Err(libc::EOPNOTSUPP) => Ok(plain),
            Err(e) => Err(e),
        }
    }

    /// Give entry `name` of `dirfd` the ACLs it inherits.
    pub(crate) fn set_inherited(&self, dirfd: i32, name: &OsStr, i: &Inherited) -> Res<()> {
        let p = sys::xattr_path(dirfd, name)?;
        if let Some(a) = &i.access {
            sys::lsetxattr(&p, OsStr::new(ACCESS), a, 0)?;
        }
        if let Some(d) = &i.default {
            sys::lsetxattr(&p, OsStr::new(DEFAULT), d, 0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = VERSION.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    const ANY: u32 = u32::MAX;

    #[test]
    fn a_file_takes_the_default_acl_cut_down_to_its_mode() {
        // u::rwx, u:1234:r-x, g::r-x, m::rwx, o::r-x; a file asked for 0666.
        let d = acl(&[
            (USER_OBJ, 7, ANY),
            (USER, 5, 1234),
            (GROUP_OBJ, 5, ANY),
            (MASK, 7, ANY),
            (OTHER, 5, ANY),
        ]);
        let i = inherit(&d, libc::S_IFREG | 0o666).unwrap();
        assert_eq!(i.mode, libc::S_IFREG | 0o664);
        let want = acl(&[
            (USER_OBJ, 6, ANY),
            (USER, 5, 1234),
            (GROUP_OBJ, 5, ANY),
            (MASK, 6, ANY),
            (OTHER, 4, ANY),
        ]);
        assert_eq!(i.access, Some(want));
        assert_eq!(i.default, None);
    }

    #[test]
    fn a_directory_keeps_the_default_acl_as_its_own_default() {
        let d = acl(&[(USER_OBJ, 7, ANY), (GROUP_OBJ, 7, ANY), (OTHER, 5, ANY)]);
        let i = inherit(&d, libc::S_IFDIR | libc::S_ISGID | 0o777).unwrap();
        // Three entries say no more than the mode: no access ACL; the group entry is cut.
        assert_eq!(i.mode, libc::S_IFDIR | libc::S_ISGID | 0o775);
        assert_eq!(i.access, None);
        assert_eq!(i.default, Some(d.clone()));
        let i = inherit(&d, libc::S_IFDIR | 0o700).unwrap();
        assert_eq!(i.mode, libc::S_IFDIR | 0o700);
    }

    #[test]
    fn a_malformed_default_acl_is_refused() {
        assert_eq!(inherit(b"\x02\0\0", libc::S_IFREG), Err(libc::EINVAL));
        assert_eq!(
            inherit(&acl(&[(USER_OBJ, 7, ANY), (OTHER, 7, ANY)]), libc::S_IFREG),
            Err(libc::EINVAL)
        );
        let mut v = acl(&[(USER_OBJ, 7, ANY), (GROUP_OBJ, 7, ANY), (OTHER, 7, ANY)]);
        v[0] = 1;
        assert_eq!(inherit(&v, libc::S_IFREG), Err(libc::EINVAL));
    }
}
