//! A host directory as a layer tar (for `image import DIR`): owners, modes, times, xattrs as
//! PAX `SCHILY.xattr.*`, hard links as links to the first name, symlinks, devices and fifos;
//! symlinks are stored, never followed. Entries are written in name order, so the same tree
//! always makes the same tar (and so the same diff_id).

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use tar::{EntryType, Header};

use crate::sys;

pub fn pack(dir: &Path, w: impl Write) -> Result<()> {
    let mut b = tar::Builder::new(w);
    b.mode(tar::HeaderMode::Complete);
    let mut links = HashMap::new();
    root_entry(&mut b, dir)?;
    walk(&mut b, dir, Path::new(""), &mut links)?;
    b.into_inner().context("finishing the layer tar")?.flush()?;
    Ok(())
}

/// The root directory first, as "./": the layer root keeps its mode, owner and times.
pub fn root_entry<W: Write>(b: &mut tar::Builder<W>, dir: &Path) -> Result<()> {
    let md = fs::symlink_metadata(dir).with_context(|| format!("{}", dir.display()))?;
    let mut h = header_of(&md);
    h.set_entry_type(EntryType::Directory);
    pax_xattrs(b, dir)?;
    b.append_data(&mut h, ".", std::io::empty())?;
    Ok(())
}

fn walk<W: Write>(
    b: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
) -> Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .with_context(|| format!("{}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("{}", dir.display()))?;
    names.sort();
    let dfd = fs::File::open(&dir).with_context(|| format!("{}", dir.display()))?;
    for n in names {
        let r = rel.join(&n);
        if entry(b, dfd.as_raw_fd(), &n, &root.join(&r), &r, links, true)? {
            walk(b, root, &r, links)?;
        }
    }
    Ok(())
}

/// Append one entry: `p` (named `n` in the directory open at `dfd`) as `r` in the tar, its
/// file data only with `data` (a mountpoint keeps its entry, not what is below or in it).
/// Hard links of a file already written become links to its first name. Returns whether it
/// is a directory (whose content the caller walks).
pub fn entry<W: Write>(
    b: &mut tar::Builder<W>,
    dfd: std::os::fd::RawFd,
    n: &std::ffi::OsStr,
    p: &Path,
    r: &Path,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
    data: bool,
) -> Result<bool> {
    {
        let md = fs::symlink_metadata(p).with_context(|| format!("{}", p.display()))?;
        let ft = md.file_type();
        let mut h = header_of(&md);
        // Unprivileged layers keep refused owners (and device types) in the override xattr.
        let mut st = sys::fstatat(dfd, n).map_err(std::io::Error::from_raw_os_error)?;
        crate::union::xattr::apply_override(dfd, n, &mut st);
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mode(st.st_mode & 0o7777);
        let stood_in = ft.is_file() && st.st_mode & libc::S_IFMT != libc::S_IFREG;
        pax_xattrs(b, p)?;
        let what = || format!("{}", p.display());
        if !ft.is_dir() && md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = links.get(&key) {
                h.set_entry_type(EntryType::Link);
                b.append_link(&mut h, r, first).with_context(what)?;
                return Ok(false);
            }
            links.insert(key, r.to_path_buf());
        }
        if ft.is_dir() {
            h.set_entry_type(EntryType::Directory);
            b.append_data(&mut h, r, std::io::empty())
                .with_context(what)?;
            return Ok(true);
        } else if stood_in {
            // A device node an unprivileged import could not make: an empty file stands in.
            h.set_entry_type(match st.st_mode & libc::S_IFMT {
                libc::S_IFCHR => EntryType::Char,
                libc::S_IFBLK => EntryType::Block,
                _ => EntryType::Fifo,
            });
            h.set_device_major(0)?;
            h.set_device_minor(0)?;
            b.append_data(&mut h, r, std::io::empty())
                .with_context(what)?;
        } else if ft.is_file() && !data {
            h.set_entry_type(EntryType::Regular);
            b.append_data(&mut h, r, std::io::empty())
                .with_context(what)?;
        } else if ft.is_file() {
            h.set_entry_type(EntryType::Regular);
            h.set_size(md.len());
            let f = fs::File::open(p).with_context(what)?;
            b.append_data(&mut h, r, f).with_context(what)?;
        } else if ft.is_symlink() {
            h.set_entry_type(EntryType::Symlink);
            let t = fs::read_link(p).with_context(what)?;
            b.append_link(&mut h, r, t).with_context(what)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            h.set_entry_type(if ft.is_char_device() {
                EntryType::Char
            } else if ft.is_block_device() {
                EntryType::Block
            } else {
                EntryType::Fifo
            });
            let rdev = md.rdev();
            h.set_device_major(libc::major(rdev))?;
            h.set_device_minor(libc::minor(rdev))?;
            b.append_data(&mut h, r, std::io::empty())
                .with_context(what)?;
        } else if ft.is_socket() {
            // Sockets do not go in image layers (Docker and umoci leave them out too).
        } else {
            bail!("{}: unsupported file type", p.display());
        }
    }
    Ok(false)
}

/// A header with an entry's owner, mode and mtime (nanoseconds in a PAX record would make
/// every tar of the same tree differ with the filesystem's time granularity; seconds as ustar).
fn header_of(md: &fs::Metadata) -> Header {
    let mut h = Header::new_gnu();
    h.set_mode(md.mode() & 0o7777);
    h.set_uid(md.uid() as u64);
    h.set_gid(md.gid() as u64);
    h.set_mtime(md.mtime().max(0) as u64);
    h.set_size(0);
    h
}

/// The PAX `SCHILY.xattr.*` records of `p`'s xattrs, before its entry.
fn pax_xattrs<W: Write>(b: &mut tar::Builder<W>, p: &Path) -> Result<()> {
    let xattrs = xattrs_of(p)?;
    if !xattrs.is_empty() {
        let pax: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
            .collect();
        b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))?;
    }
    Ok(())
}

/// A file's xattrs, without the union's private bookkeeping.
fn xattrs_of(p: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let c = CString::new(p.as_os_str().as_bytes())?;
    let names = match sys::llistxattr(&c) {
        Ok(n) => n,
        Err(libc::EOPNOTSUPP) => return Ok(vec![]),
        Err(e) => return Err(std::io::Error::from_raw_os_error(e)).context("listxattr"),
    };
    let mut out = Vec::new();
    for n in names {
        if crate::union::layer::is_private_xattr(&n) {
            continue;
        }
        if let Ok(v) = sys::lgetxattr(&c, &n) {
            out.push((n.to_string_lossy().into_owned(), v));
        }
    }
    out.sort();
    Ok(out)
}
