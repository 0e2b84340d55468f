//! Extended attributes, and the access ACL whose change is a change of the mode too.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use fuser::{Errno, INodeNo, ReplyEmpty, ReplyXattr, Request};

use super::convert::{caller, done, err, id, xattr_reply};
use super::{near, StrataFs};
// The access ACL: setting it sets the mode too (its owner, group or mask, and other entries
// are the mode's bits), which the kernel, seeing only an xattr change, keeps cached as it was.
use crate::union::acl::ACCESS as ACCESS_ACL;

impl StrataFs {
    pub(super) fn set_xattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        reply: ReplyEmpty,
    ) {
        log::debug!(
            "setxattr {} {:?} ({} bytes) {flags:#x}",
            ino.0,
            name,
            value.len()
        );
        let (_, fs, local) = self.tree.route(id(ino));
        let r = fs
            .setxattr(local, name, value, flags)
            .and_then(|_| match name == ACCESS_ACL {
                true => fs.access_acl_set_by(local, &caller(req)),
                false => Ok(()),
            });
        if name == ACCESS_ACL {
            self.forget_attributes(ino);
        }
        done(reply, r)
    }

    pub(super) fn get_xattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        size: u32,
        reply: ReplyXattr,
    ) {
        near::follow(req.pid());
        log::debug!("getxattr {} {:?} {size}", ino.0, name);
        // `ls -l` asks for a directory's ACL and security label before it lists it, and then
        // stats every entry: its listing should come with attributes from the first entry.
        if name.as_bytes().starts_with(b"system.posix_acl_") || name == "security.selinux" {
            self.uses_attributes(req.pid());
        }
        let (_, fs, local) = self.tree.route(id(ino));
        match fs.getxattr(local, name) {
            Ok(v) => xattr_reply(reply, size, &v),
            // The kernel checks access by what this answers, and takes "not supported" (a
            // layer on a filesystem without ACLs) for an error: such a file has no ACL.
            Err(libc::EOPNOTSUPP) if self.posix_acl && crate::union::acl::is_acl_xattr(name) => {
                reply.error(Errno::ENODATA)
            }
            Err(e) => reply.error(err(e)),
        }
    }

    pub(super) fn list_xattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        near::follow(req.pid());
        log::debug!("listxattr {} {size}", ino.0);
        let (_, fs, local) = self.tree.route(id(ino));
        match fs.listxattr(local) {
            Ok(names) => {
                let mut buf = Vec::new();
                for n in names {
                    buf.extend_from_slice(n.as_bytes());
                    buf.push(0);
                }
                xattr_reply(reply, size, &buf)
            }
            Err(e) => reply.error(err(e)),
        }
    }

    pub(super) fn remove_xattr(&self, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        log::debug!("removexattr {} {:?}", ino.0, name);
        let (_, fs, local) = self.tree.route(id(ino));
        let r = fs.removexattr(local, name);
        if r.is_ok() && name == ACCESS_ACL {
            self.forget_attributes(ino);
        }
        done(reply, r)
    }
}
