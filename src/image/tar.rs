//! Unpacking one layer tar into a directory of the store: owners, modes, times, PAX
//! `SCHILY.xattr.*`, hard links within the layer, symlinks, device nodes and fifos are kept,
//! and OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) stay the plain files they are (the union
//! reads them). Every call goes through the layer's root fd and never follows a symlink that
//! lives in the layer, so an entry that would escape it (an absolute path, `..`, a hard link to
//! outside, a write through a symlink) is refused with one line naming it.
//!
//! Unprivileged, what the filesystem refuses (another owner, a device node) is recorded in the
//! union's override xattr (`user.strata.override_stat`), so a mount shows the image's owners.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use tar::EntryType;

use super::at::{dup, fset, open_dir_path, remove_all};
use crate::sys;
use crate::union::xattr::{set_override, OVERRIDE_XATTR};

/// What an unpacked layer holds.
#[derive(Debug, Default)]
pub struct Unpacked {
    /// Bytes of file data (what Docker counts as a layer's size).
    pub size: u64,
    pub entries: u64,
    /// Xattrs the filesystem would not take (trusted.* and security.* unprivileged).
    pub refused_xattrs: u64,
}

/// Owner, permission bits and times of an entry, as the tar says.
#[derive(Clone, Copy)]
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    times: [libc::timespec; 2],
}

/// `SCHILY.xattr.*` records: name and value.
type Xattrs = Vec<(OsString, Vec<u8>)>;

struct Unpacker {
    root: OwnedFd,
    euid: u32,
    egid: u32,
    /// Directories get their mode and times last, deepest first: entries created inside them
    /// would change their mtime, and a read-only mode would stop them being filled.
    dirs: BTreeMap<PathBuf, Meta>,
    /// The last parent directory opened, the common case for consecutive entries.
    cache: Option<(PathBuf, OwnedFd)>,
    out: Unpacked,
    /// Told where each file's data is, to keep the rest of the tar (`split`).
    split: Option<super::split::Split>,
}

/// Unpack the (uncompressed) layer tar `r` into the existing, empty directory `dir`.
#[cfg(test)]
pub fn unpack(r: impl Read, dir: &Path) -> Result<Unpacked> {
    unpack_split(r, dir, None)
}

/// The same, telling `split` where each regular file's data is in the stream.
pub fn unpack_split(
    r: impl Read,
    dir: &Path,
    split: Option<super::split::Split>,
) -> Result<Unpacked> {
    let root = open_dir_path(dir)?;
    let mut u = Unpacker {
        root,
        euid: sys::geteuid(),
        egid: unsafe { libc::getegid() },
        dirs: BTreeMap::new(),
        cache: None,
        out: Unpacked::default(),
        split,
    };
    let mut ar = tar::Archive::new(r);
    for e in ar.entries().context("reading the layer tar")? {
        let mut e = e.context("reading the layer tar")?;
        let raw = e.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        u.entry(&mut e)
            .with_context(|| format!("layer entry {shown:?}"))?;
        u.out.entries += 1;
    }
    u.finish_dirs()?;
    Ok(u.out)
}

/// An entry's path made relative to the layer root, refusing one that leaves it.
pub fn clean(p: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => bail!("'..' would leave the layer"),
            Component::RootDir | Component::Prefix(_) => {
                bail!("an absolute path would leave the layer")
            }
        }
    }
    Ok(out)
}

fn errno(e: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(e)
}

impl Unpacker {
    fn entry<R: Read>(&mut self, e: &mut tar::Entry<R>) -> Result<()> {
        let kind = e.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let rel = clean(&e.path()?)?;
        let (meta, xattrs) = self.meta_of(e)?;
        if rel.as_os_str().is_empty() {
            // The layer root itself ("./"): only its metadata.
            if kind != EntryType::Directory {
                bail!("the layer root can only be a directory");
            }
            self.owner_xattrs(
                self.root.as_raw_fd(),
                OsStr::new(""),
                libc::S_IFDIR,
                &meta,
                &xattrs,
            )?;
            self.dirs.insert(rel, meta);
            return Ok(());
        }
        let name = rel.file_name().unwrap().to_os_string();
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let pfd = self.parent(&parent_rel)?;
        let ifmt = match kind {
            EntryType::Directory => libc::S_IFDIR,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => libc::S_IFREG,
            EntryType::Symlink => libc::S_IFLNK,
            EntryType::Link => 0,
            EntryType::Char => libc::S_IFCHR,
            EntryType::Block => libc::S_IFBLK,
            EntryType::Fifo => libc::S_IFIFO,
            other => bail!("unsupported tar entry type {other:?}"),
        };
        if ifmt == libc::S_IFREG {
            return self.regular(e, pfd, &name, &rel, &meta, &xattrs);
        }
        self.clear(pfd, &name, &rel, ifmt == libc::S_IFDIR)?;
        match kind {
            EntryType::Directory => {
                match sys::mkdirat(pfd, &name, 0o700) {
                    Ok(()) | Err(libc::EEXIST) => {}
                    Err(e) => return Err(errno(e)).context("mkdir"),
                }
                self.owner_xattrs(pfd, &name, ifmt, &meta, &xattrs)?;
                self.dirs.insert(rel, meta);
                return Ok(());
            }
            EntryType::Link => {
                let target = e
                    .link_name()?
                    .ok_or_else(|| anyhow!("a hard link without a target"))?;
                let t = clean(&target).with_context(|| format!("hard link to {:?}", target))?;
                if t.as_os_str().is_empty() {
                    bail!("a hard link to the layer root");
                }
                let tparent = t.parent().unwrap_or(Path::new(""));
                let tfd = self
                    .open_existing_dir(tparent)
                    .with_context(|| format!("hard link to {:?}", target))?;
                let tname = t.file_name().unwrap();
                match sys::linkat(tfd.as_raw_fd(), tname, pfd, &name) {
                    Ok(()) => {}
                    Err(libc::ENOENT) => {
                        bail!("hard link to {target:?}, which the layer does not hold before it")
                    }
                    Err(libc::EPERM) => {
                        bail!("hard link to {target:?}: a directory cannot be linked")
                    }
                    Err(e) => {
                        return Err(errno(e)).with_context(|| format!("hard link to {target:?}"))
                    }
                }
                return Ok(());
            }
            EntryType::Symlink => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| anyhow!("a symlink without a target"))?;
                sys::symlinkat(OsStr::from_bytes(&target), pfd, &name)
                    .map_err(errno)
                    .context("symlink")?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                // GNU tar leaves a fifo's device fields blank.
                let dev = |v: std::io::Result<Option<u32>>| match v {
                    Ok(n) => Ok(n.unwrap_or(0)),
                    Err(_) if ifmt == libc::S_IFIFO => Ok(0),
                    Err(e) => Err(e),
                };
                let major = dev(e.header().device_major())?;
                let minor = dev(e.header().device_minor())?;
                let rdev = libc::makedev(major, minor);
                match sys::mknodat(pfd, &name, ifmt | 0o600, rdev) {
                    Ok(()) => {}
                    // Unprivileged: an empty file stands in, its type in the override xattr.
                    Err(libc::EPERM) if self.euid != 0 && ifmt != libc::S_IFIFO => {
                        sys::openat(
                            pfd,
                            &name,
                            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                            0o600,
                        )
                        .map_err(errno)
                        .context("create")?;
                    }
                    Err(e) => return Err(errno(e)).context("mknod"),
                }
            }
            _ => unreachable!("regular files are written by regular()"),
        }
        self.owner_xattrs(pfd, &name, ifmt, &meta, &xattrs)?;
        if ifmt != libc::S_IFLNK {
            sys::chmodat(pfd, &name, meta.mode)
                .map_err(errno)
                .context("chmod")?;
        }
        sys::utimensat(pfd, &name, &meta.times)
            .map_err(errno)
            .context("set times")?;
        Ok(())
    }

    /// A regular file: created, written and given its owner, xattrs, mode and times through
    /// its own fd, which spares the path lookups of the other kinds (most entries are files).
    fn regular<R: Read>(
        &mut self,
        e: &mut tar::Entry<R>,
        pfd: RawFd,
        name: &OsStr,
        rel: &Path,
        m: &Meta,
        xattrs: &Xattrs,
    ) -> Result<()> {
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY;
        let fd = match sys::openat(pfd, name, flags, 0o600) {
            Err(libc::EEXIST) => {
                self.clear(pfd, name, rel, false)?;
                sys::openat(pfd, name, flags, 0o600)
            }
            r => r,
        }
        .map_err(errno)
        .context("create")?;
        let mut f = File::from(fd);
        // A sparse file's data is not laid out as the file is: its bytes are kept as they are.
        if let Some(s) = &self.split {
            if e.header().entry_type() != EntryType::GNUSparse {
                s.file(rel, e.size()).context("layer record")?;
            }
        }
        self.out.size += std::io::copy(e, &mut f).context("writing its data")?;
        let fd = f.as_raw_fd();
        let check = |r: i32, what: &'static str| {
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error()).context(what)
            }
        };
        // chown first: it clears set-id bits and security.capability, which come after it.
        let chown = self.euid == 0 || m.uid != self.euid || m.gid != self.egid;
        if chown && unsafe { libc::fchown(fd, m.uid, m.gid) } != 0 {
            let err = std::io::Error::last_os_error();
            let refused = matches!(err.raw_os_error(), Some(libc::EPERM | libc::EINVAL));
            if self.euid == 0 || !refused {
                return Err(err).context("chown");
            }
            let v = format!("{}:{}:0{:o}", m.uid, m.gid, libc::S_IFREG | m.mode);
            fset(fd, OsStr::new(OVERRIDE_XATTR), v.as_bytes())
                .map_err(errno)
                .context("record the owner in user.strata.override_stat")?;
        }
        for (k, v) in xattrs {
            match fset(fd, k, v) {
                Ok(()) => {}
                Err(libc::EPERM | libc::EOPNOTSUPP) => self.out.refused_xattrs += 1,
                Err(e) => {
                    return Err(errno(e)).with_context(|| format!("xattr {}", k.to_string_lossy()))
                }
            }
        }
        check(unsafe { libc::fchmod(fd, m.mode) }, "chmod")?;
        check(unsafe { libc::futimens(fd, m.times.as_ptr()) }, "set times")
    }

    /// Owner, mode and times from the header, with PAX records (uid, gid, mtime, atime) winning;
    /// and the `SCHILY.xattr.*` records.
    fn meta_of<R: Read>(&self, e: &mut tar::Entry<R>) -> Result<(Meta, Xattrs)> {
        let h = e.header();
        let mtime = h.mtime().unwrap_or(0) as i64;
        let mut m = Meta {
            uid: h.uid().unwrap_or(0) as u32,
            gid: h.gid().unwrap_or(0) as u32,
            mode: h.mode().unwrap_or(0o644) & 0o7777,
            times: [ts(mtime, 0), ts(mtime, 0)],
        };
        let mut xattrs = Vec::new();
        let mut atime = None;
        if let Some(exts) = e.pax_extensions()? {
            for x in exts {
                let x = x?;
                let key = x.key().unwrap_or("");
                let val = x.value().unwrap_or("");
                if let Some(n) = key.strip_prefix("SCHILY.xattr.") {
                    xattrs.push((OsString::from(n), x.value_bytes().to_vec()));
                } else if key == "uid" {
                    m.uid = val.parse().context("PAX uid")?;
                } else if key == "gid" {
                    m.gid = val.parse().context("PAX gid")?;
                } else if key == "mtime" {
                    m.times[1] = parse_time(val)?;
                } else if key == "atime" {
                    atime = Some(parse_time(val)?);
                }
            }
        }
        m.times[0] = atime.unwrap_or(m.times[1]);
        Ok((m, xattrs))
    }

    /// chown (or, refused unprivileged, the override xattr) and the entry's xattrs. chown
    /// comes first: it clears set-id bits and security.capability, which come after it.
    fn owner_xattrs(
        &mut self,
        pfd: RawFd,
        name: &OsStr,
        ifmt: u32,
        m: &Meta,
        xattrs: &Xattrs,
    ) -> Result<()> {
        let st = sys::fstatat(pfd, name).map_err(errno).context("stat")?;
        let mut record = self.euid != 0 && st.st_mode & libc::S_IFMT != ifmt;
        if st.st_uid != m.uid || st.st_gid != m.gid {
            match sys::lchownat(pfd, name, m.uid, m.gid) {
                Ok(()) => {}
                Err(libc::EPERM | libc::EINVAL) if self.euid != 0 => record = true,
                Err(e) => return Err(errno(e)).context("chown"),
            }
        }
        // user.* xattrs are allowed on files and directories only: a symlink's or a fifo's
        // owner is not kept unprivileged (device nodes are files standing in here).
        if record && ifmt != libc::S_IFLNK && ifmt != libc::S_IFIFO {
            set_override(pfd, name, m.uid, m.gid, ifmt | m.mode)
                .map_err(errno)
                .context("record the owner in user.strata.override_stat")?;
        }
        if !xattrs.is_empty() {
            let p = sys::xattr_path(pfd, name).map_err(errno)?;
            for (k, v) in xattrs {
                match sys::lsetxattr(&p, k, v, 0) {
                    Ok(()) => {}
                    Err(libc::EPERM | libc::EOPNOTSUPP) => self.out.refused_xattrs += 1,
                    Err(e) => {
                        return Err(errno(e))
                            .with_context(|| format!("xattr {}", k.to_string_lossy()))
                    }
                }
            }
        }
        Ok(())
    }

    /// Make room for a new entry: a later entry replaces an earlier one of the same name, except
    /// that a directory stays a directory (its new metadata is applied).
    fn clear(&mut self, pfd: RawFd, name: &OsStr, rel: &Path, new_is_dir: bool) -> Result<()> {
        let Some(st) = sys::stat_opt(pfd, name).map_err(errno)? else {
            return Ok(());
        };
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if is_dir && new_is_dir {
            return Ok(());
        }
        if is_dir {
            // The cache holds `rel`'s parent, never below `rel`; forget it if it were.
            if matches!(&self.cache, Some((p, _)) if p.starts_with(rel)) {
                self.cache = None;
            }
            remove_all(pfd, name).context("replace a directory")?;
        } else {
            sys::unlinkat(pfd, name, false)
                .map_err(errno)
                .context("replace")?;
        }
        Ok(())
    }

    /// The directory an entry goes in, made (0755) where the tar has no entry for it.
    fn parent(&mut self, rel: &Path) -> Result<RawFd> {
        if rel.as_os_str().is_empty() {
            return Ok(self.root.as_raw_fd());
        }
        if !matches!(&self.cache, Some((p, _)) if p == rel) {
            let fd = self.walk(rel, true)?;
            self.cache = Some((rel.to_path_buf(), fd));
        }
        Ok(self.cache.as_ref().unwrap().1.as_raw_fd())
    }

    fn open_existing_dir(&mut self, rel: &Path) -> Result<OwnedFd> {
        self.walk(rel, false)
    }

    /// Open `rel` below the root one component at a time, never following a symlink.
    fn walk(&self, rel: &Path, create: bool) -> Result<OwnedFd> {
        let mut fd = dup(self.root.as_raw_fd())?;
        let mut sofar = PathBuf::new();
        for c in rel.components() {
            let n = c.as_os_str();
            sofar.push(n);
            let flags = libc::O_RDONLY | libc::O_DIRECTORY;
            let next = match sys::openat(fd.as_raw_fd(), n, flags, 0) {
                Err(libc::ENOENT) if create => {
                    sys::mkdirat(fd.as_raw_fd(), n, 0o755)
                        .map_err(errno)
                        .with_context(|| format!("mkdir {}", sofar.display()))?;
                    sys::openat(fd.as_raw_fd(), n, flags, 0)
                }
                r => r,
            };
            fd = match next {
                Ok(f) => f,
                Err(libc::ELOOP) => bail!(
                    "{} is a symlink: nothing is written through one",
                    sofar.display()
                ),
                Err(libc::ENOTDIR) => {
                    let st = sys::fstatat(fd.as_raw_fd(), n).map_err(errno)?;
                    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                        bail!(
                            "{} is a symlink: nothing is written through one",
                            sofar.display()
                        );
                    }
                    bail!("{} is not a directory", sofar.display())
                }
                Err(e) => {
                    return Err(errno(e)).with_context(|| format!("open {}", sofar.display()))
                }
            };
        }
        Ok(fd)
    }

    /// Directory modes and times, deepest first.
    fn finish_dirs(&mut self) -> Result<()> {
        self.cache = None;
        let dirs = std::mem::take(&mut self.dirs);
        for (rel, m) in dirs.iter().rev() {
            let (pfd, name) = if rel.as_os_str().is_empty() {
                (dup(self.root.as_raw_fd())?, OsString::new())
            } else {
                let parent = rel.parent().unwrap_or(Path::new(""));
                (
                    self.walk(parent, false)?,
                    rel.file_name().unwrap().to_os_string(),
                )
            };
            let what = || format!("layer entry {:?}", rel.display().to_string());
            sys::chmodat(pfd.as_raw_fd(), &name, m.mode)
                .map_err(errno)
                .with_context(what)?;
            sys::utimensat(pfd.as_raw_fd(), &name, &m.times)
                .map_err(errno)
                .with_context(what)?;
        }
        Ok(())
    }
}

fn ts(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

/// A PAX time: seconds, optionally with a fraction (`1700000000.5`, `-1.5`).
fn parse_time(v: &str) -> Result<libc::timespec> {
    let bad = || anyhow!("PAX time {v:?}: not a number");
    let (s, frac) = v.split_once('.').unwrap_or((v, ""));
    let sec: i64 = s.parse().map_err(|_| bad())?;
    let mut digits: String = frac.chars().take(9).collect();
    if !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    while digits.len() < 9 {
        digits.push('0');
    }
    let nsec: i64 = digits.parse().map_err(|_| bad())?;
    // A timespec's nanoseconds count forward: -1.5 s is -2 s + 0.5 s.
    Ok(if s.starts_with('-') && nsec > 0 {
        ts(sec - 1, 1_000_000_000 - nsec)
    } else {
        ts(sec, nsec)
    })
}

#[cfg(test)]
#[path = "tar_tests.rs"]
mod tests;
