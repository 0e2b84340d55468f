//! The copy's destination side: items written into a directory held as an fd. Each item's
//! parent is opened beneath that fd with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so
//! an entry never lands outside the directory, through a symlink already there or one swapped
//! in meanwhile; the entry itself is made with the `*at()` calls, never following a symlink.
//! Into a container, this is an ordinary writer of its merged root: the union makes the
//! copy-ups and whiteouts.
//!
//! Docker's untar rules hold: an existing directory takes a directory's metadata, an existing
//! non-directory is replaced, and neither a directory replaces a non-directory nor the reverse.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::pack::{Item, Kind, Sink};
use super::tree::{errno_text, is_dir};
use crate::sys;

/// Who owns what is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The uid and gid the items carry.
    Keep,
    /// These.
    Set(u32, u32),
    /// Whoever runs the copy (no chown).
    Caller,
}

pub struct Unpacker {
    dest: OwnedFd,
    owner: Owner,
    /// Directories' times, set once their contents are written.
    dir_times: Vec<(PathBuf, [libc::timespec; 2])>,
}

/// A path of the copy as components beneath the destination ("" for the top `.`).
fn clean(p: &str) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            _ => bail!("invalid path in the copy: {p:?}"),
        }
    }
    Ok(out)
}

fn err(what: &str, path: &Path, e: i32) -> anyhow::Error {
    anyhow!("{what} {}: {}", path.display(), errno_text(e))
}

impl Unpacker {
    pub fn new(dest: OwnedFd, owner: Owner) -> Unpacker {
        Unpacker {
            dest,
            owner,
            dir_times: Vec::new(),
        }
    }

    fn beneath(&self, rel: &Path) -> Result<OwnedFd> {
        sys::openat2(
            self.dest.as_raw_fd(),
            rel,
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
            sys::RESOLVE_SAFE,
        )
        .map_err(|e| match e {
            libc::ELOOP | libc::EXDEV => {
                anyhow!(
                    "cannot copy into {}: a symlink is in the way",
                    rel.display()
                )
            }
            e => err("open", rel, e),
        })
    }

    fn ids(&self, item: &Item) -> Option<(u32, u32)> {
        match self.owner {
            Owner::Keep => Some((item.uid, item.gid)),
            Owner::Set(u, g) => Some((u, g)),
            Owner::Caller => None,
        }
    }

    /// chown, tolerated to fail only for an unprivileged caller (who can give files away to
    /// no one), as an unprivileged tar does.
    fn chown(&self, r: sys::Res<()>, rel: &Path) -> Result<()> {
        match r {
            Err(libc::EPERM | libc::EINVAL) if sys::geteuid() != 0 => Ok(()),
            Err(e) => Err(err("chown", rel, e)),
            Ok(()) => Ok(()),
        }
    }

    fn write_file(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        rel: &Path,
        item: &Item,
        data: &mut dyn Read,
    ) -> Result<()> {
        let fd = sys::openat(
            parent.as_raw_fd(),
            name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )
        .map_err(|e| err("create", rel, e))?;
        let mut f = std::fs::File::from(fd);
        io::copy(data, &mut f).with_context(|| format!("write {}", rel.display()))?;
        if let Some((u, g)) = self.ids(item) {
            self.chown(sys::fchown(f.as_raw_fd(), u, g), rel)?;
        }
        sys::fchmod(f.as_raw_fd(), item.mode).map_err(|e| err("chmod", rel, e))?;
        sys::futimens(f.as_raw_fd(), &times(item)).map_err(|e| err("set the times of", rel, e))
    }
}

fn times(item: &Item) -> [libc::timespec; 2] {
    let t = libc::timespec {
        tv_sec: item.mtime.0,
        tv_nsec: item.mtime.1,
    };
    [t, t]
}

impl Sink for Unpacker {
    fn put(&mut self, item: &Item, data: &mut dyn Read) -> Result<()> {
        let rel = clean(&item.path)?;
        let (parent_rel, name) = match (rel.parent(), rel.file_name()) {
            (Some(p), Some(n)) => (p.to_path_buf(), n.to_os_string()),
            // The top `.`: the destination itself, which exists as a directory.
            _ => return Ok(()),
        };
        let parent = self.beneath(&parent_rel)?;
        let pfd = parent.as_raw_fd();
        let old = sys::stat_opt(pfd, &name).map_err(|e| err("lstat", &rel, e))?;
        let want_dir = matches!(item.kind, Kind::Dir);
        if let Some(st) = &old {
            match (is_dir(st), want_dir) {
                (true, false) => bail!(
                    "cannot overwrite directory {:?} with non-directory {:?}",
                    rel,
                    item.path
                ),
                (false, true) => bail!(
                    "cannot overwrite non-directory {:?} with directory {:?}",
                    rel,
                    item.path
                ),
                (false, false) => {
                    sys::unlinkat(pfd, &name, false).map_err(|e| err("remove", &rel, e))?
                }
                (true, true) => {}
            }
        }
        let ids = self.ids(item);
        match &item.kind {
            Kind::Dir => {
                if old.is_none() {
                    sys::mkdirat(pfd, &name, 0o700).map_err(|e| err("mkdir", &rel, e))?;
                }
                let d = sys::openat(pfd, &name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
                    .map_err(|e| err("open", &rel, e))?;
                if let Some((u, g)) = ids {
                    self.chown(sys::fchown(d.as_raw_fd(), u, g), &rel)?;
                }
                sys::fchmod(d.as_raw_fd(), item.mode).map_err(|e| err("chmod", &rel, e))?;
                self.dir_times.push((rel, times(item)));
                Ok(())
            }
            Kind::File { .. } => self.write_file(&parent, &name, &rel, item, data),
            Kind::Symlink(t) => {
                sys::symlinkat(OsStr::from_bytes(t), pfd, &name)
                    .map_err(|e| err("symlink", &rel, e))?;
                if let Some((u, g)) = ids {
                    self.chown(sys::lchownat(pfd, &name, u, g), &rel)?;
                }
                sys::utimensat(pfd, &name, &times(item))
                    .map_err(|e| err("set the times of", &rel, e))
            }
            Kind::Link(t) => {
                let target = clean(t)?;
                let (tp, tn) = match (target.parent(), target.file_name()) {
                    (Some(p), Some(n)) => (p.to_path_buf(), n.to_os_string()),
                    _ => bail!("invalid hard link in the copy: {t:?}"),
                };
                let tdir = self.beneath(&tp)?;
                sys::linkat(tdir.as_raw_fd(), &tn, pfd, &name).map_err(|e| err("link", &rel, e))
            }
            Kind::Char(_) | Kind::Block(_) | Kind::Fifo => {
                let (fmt, rdev) = match item.kind {
                    Kind::Char(r) => (libc::S_IFCHR, r),
                    Kind::Block(r) => (libc::S_IFBLK, r),
                    _ => (libc::S_IFIFO, 0),
                };
                sys::mknodat(pfd, &name, fmt | (item.mode & 0o7777), rdev)
                    .map_err(|e| err("mknod", &rel, e))?;
                if let Some((u, g)) = ids {
                    self.chown(sys::lchownat(pfd, &name, u, g), &rel)?;
                }
                sys::chmodat(pfd, &name, item.mode).map_err(|e| err("chmod", &rel, e))?;
                sys::utimensat(pfd, &name, &times(item))
                    .map_err(|e| err("set the times of", &rel, e))
            }
        }
    }

    fn finish(&mut self) -> Result<()> {
        for (rel, t) in self.dir_times.iter().rev() {
            let d = self.beneath(rel)?;
            sys::futimens(d.as_raw_fd(), t).map_err(|e| err("set the times of", rel, e))?;
        }
        Ok(())
    }
}

/// A tar stream's entries as items, into `sink` (`cp - C:DIR`).
pub fn from_tar(input: impl Read, sink: &mut dyn Sink) -> Result<()> {
    let mut a = tar::Archive::new(input);
    for e in a.entries().context("read the tar stream")? {
        let mut e = e.context("read the tar stream")?;
        let h = e.header().clone();
        let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let link = || -> Result<Vec<u8>> {
            e.link_name_bytes()
                .map(|b| b.into_owned())
                .ok_or_else(|| anyhow!("{path}: a link without a target"))
        };
        let rdev = || -> u64 {
            libc::makedev(
                h.device_major().ok().flatten().unwrap_or(0),
                h.device_minor().ok().flatten().unwrap_or(0),
            )
        };
        let kind = match h.entry_type() {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File {
                size: h.size().unwrap_or(0),
            },
            tar::EntryType::Symlink => Kind::Symlink(link()?),
            tar::EntryType::Link => {
                Kind::Link(OsString::from_vec(link()?).to_string_lossy().into_owned())
            }
            tar::EntryType::Char => Kind::Char(rdev()),
            tar::EntryType::Block => Kind::Block(rdev()),
            tar::EntryType::Fifo => Kind::Fifo,
            // PAX and GNU headers are read by the tar crate itself.
            _ => continue,
        };
        let item = Item {
            path,
            kind,
            mode: h.mode().unwrap_or(0o644) & 0o7777,
            uid: h.uid().unwrap_or(0) as u32,
            gid: h.gid().unwrap_or(0) as u32,
            mtime: (h.mtime().unwrap_or(0) as i64, 0),
        };
        sink.put(&item, &mut e)?;
    }
    sink.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::cp::pack::{pack, TarSink};
    use crate::container::cp::tree::Tree;
    use std::fs;

    #[test]
    fn a_tree_round_trips_through_tar_and_stays_beneath() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/f"), "data").unwrap();
        fs::hard_link(src.join("sub/f"), src.join("hl")).unwrap();
        std::os::unix::fs::symlink("/etc", src.join("ln")).unwrap();
        let t = Tree::open(d.path()).unwrap();
        let found = t.entry("/src", false).unwrap();
        let mut tar = TarSink::new(Vec::new());
        pack(&found, "src", &mut tar).unwrap();
        let bytes = tar.b.into_inner().unwrap();
        let out = d.path().join("out");
        fs::create_dir(&out).unwrap();
        let mut u = Unpacker::new(t.dir("/out").unwrap(), Owner::Caller);
        from_tar(&bytes[..], &mut u).unwrap();
        assert_eq!(fs::read_to_string(out.join("src/sub/f")).unwrap(), "data");
        assert_eq!(
            fs::read_link(out.join("src/ln")).unwrap(),
            Path::new("/etc")
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            fs::metadata(out.join("src/hl")).unwrap().ino(),
            fs::metadata(out.join("src/sub/f")).unwrap().ino()
        );
        // An entry beneath the symlink stays out of /etc; `..` is refused.
        let item = |p: &str| Item {
            path: p.into(),
            kind: Kind::File { size: 0 },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: (0, 0),
        };
        let e = u.put(&item("src/ln/x"), &mut io::empty()).unwrap_err();
        assert!(e.to_string().contains("symlink is in the way"), "{e}");
        assert!(u.put(&item("../x"), &mut io::empty()).is_err());
        assert!(!d.path().join("x").exists());
    }
}
