//! Permission checks where the kernel makes none. Without `default_permissions` (unprivileged
//! mounts, unless asked) the kernel asks the daemon for access(2) and lets every open through;
//! strata then checks, as generic_permission does, against the owner and mode it shows (for an
//! unprivileged mount, the ones the override xattr records), before anything is copied up.

use super::dir::Caller;
use super::Union;
use crate::sys::Res;

/// May `who` do `mask` (R_OK, W_OK, X_OK bits) to a file with attributes `st`?
pub fn permits(st: &libc::stat, who: &Caller, mask: i32) -> bool {
    let mask = (mask & (libc::R_OK | libc::W_OK | libc::X_OK)) as u32;
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    if who.uid == 0 {
        // Root reads and writes anything, and executes what anyone may (any directory).
        return mask & libc::X_OK as u32 == 0 || is_dir || st.st_mode & 0o111 != 0;
    }
    let bits = if who.uid == st.st_uid {
        st.st_mode >> 6
    } else if who.in_group(st.st_gid) {
        st.st_mode >> 3
    } else {
        st.st_mode
    } & 0o7;
    bits & mask == mask
}

impl Union {
    /// access(2): EACCES unless `who` may do all of `mask` to node `id`.
    pub fn access(&self, id: u64, mask: i32, who: &Caller) -> Res<()> {
        let st = self.getattr(id)?;
        if permits(&st, who, mask) {
            Ok(())
        } else {
            Err(libc::EACCES)
        }
    }

    /// An open with `flags`, checked where the kernel has not checked it.
    pub(crate) fn check_open(&self, id: u64, flags: i32, who: &Caller) -> Res<()> {
        if !self.opts.check_permissions {
            return Ok(());
        }
        let mut mask = match flags & libc::O_ACCMODE {
            libc::O_WRONLY => libc::W_OK,
            libc::O_RDWR => libc::R_OK | libc::W_OK,
            _ => libc::R_OK,
        };
        if flags & libc::O_TRUNC != 0 {
            mask |= libc::W_OK;
        }
        self.access(id, mask, who)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(mode: u32, uid: u32, gid: u32) -> libc::stat {
        let mut s: libc::stat = unsafe { std::mem::zeroed() };
        s.st_mode = mode;
        s.st_uid = uid;
        s.st_gid = gid;
        s
    }

    fn who(uid: u32, gid: u32) -> Caller {
        Caller { uid, gid, pid: 0 }
    }

    #[test]
    fn owner_group_and_others_get_their_bits() {
        let f = st(libc::S_IFREG | 0o640, 1000, 100);
        assert!(permits(&f, &who(1000, 5), libc::R_OK | libc::W_OK));
        assert!(!permits(&f, &who(1000, 5), libc::X_OK));
        assert!(permits(&f, &who(2000, 100), libc::R_OK));
        assert!(!permits(&f, &who(2000, 100), libc::W_OK));
        assert!(!permits(&f, &who(2000, 200), libc::R_OK));
        // The owner's bits decide for the owner even when others have more.
        let g = st(libc::S_IFREG | 0o044, 1000, 100);
        assert!(!permits(&g, &who(1000, 100), libc::R_OK));
    }

    #[test]
    fn root_needs_an_execute_bit_to_execute_a_file() {
        assert!(permits(
            &st(libc::S_IFREG | 0o444, 5, 5),
            &who(0, 0),
            libc::W_OK
        ));
        assert!(!permits(
            &st(libc::S_IFREG | 0o644, 5, 5),
            &who(0, 0),
            libc::X_OK
        ));
        assert!(permits(
            &st(libc::S_IFREG | 0o100, 5, 5),
            &who(0, 0),
            libc::X_OK
        ));
        assert!(permits(&st(libc::S_IFDIR, 5, 5), &who(0, 0), libc::X_OK));
    }
}
