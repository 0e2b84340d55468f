//! Reading a layer tar's entry: its path made relative to the layer root (refusing one that
//! leaves it), its owner, mode and times with PAX records winning over the header, and its
//! `SCHILY.xattr.*` records.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

/// Owner, permission bits and times of an entry, as the tar says.
#[derive(Clone, Copy)]
pub(super) struct Meta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub times: [libc::timespec; 2],
}

/// `SCHILY.xattr.*` records: name and value.
pub(super) type Xattrs = Vec<(OsString, Vec<u8>)>;

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

/// Owner, mode and times from the header, with PAX records (uid, gid, mtime, atime) winning;
/// and the `SCHILY.xattr.*` records.
pub(super) fn read_meta<R: Read>(e: &mut tar::Entry<R>) -> Result<(Meta, Xattrs)> {
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

pub(super) fn ts(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

/// A PAX time: seconds, optionally with a fraction (`1700000000.5`, `-1.5`).
pub(super) fn parse_time(v: &str) -> Result<libc::timespec> {
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
