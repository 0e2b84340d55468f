//! The volume store: named directories under the state root that outlive every mount, with
//! their records (creation time, labels) and the live mounts using each.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::spec::check_volume_name;
use crate::state::{self, Locked, Root};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    /// Seconds since the epoch.
    pub created: i64,
    pub labels: BTreeMap<String, String>,
    pub anonymous: bool,
}

#[derive(Clone, Debug)]
pub struct Volume {
    pub name: String,
    pub meta: Meta,
}

/// A live mount using a volume.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct User {
    pub mountpoint: PathBuf,
    pub pid: u32,
    pub start: u64,
}

fn vol_key(name: &str) -> Vec<u8> {
    [b"vol\0", name.as_bytes()].concat()
}

fn use_prefix(name: &str) -> Vec<u8> {
    [b"use\0", name.as_bytes(), b"\0"].concat()
}

fn use_key(name: &str, pid: u32) -> Vec<u8> {
    [use_prefix(name), pid.to_be_bytes().to_vec()].concat()
}

/// A new anonymous volume's name: 64 random hex digits, as Docker's.
pub fn random_name() -> String {
    let mut b = [0u8; 32];
    let mut got = 0;
    while got < b.len() {
        let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), b.len() - got, 0) };
        if n > 0 {
            got += n as usize;
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub struct Store<'a> {
    pub root: &'a Root,
    pub db: Locked,
}

impl<'a> Store<'a> {
    pub fn open(root: &'a Root) -> Result<Store<'a>> {
        Ok(Store {
            db: root.open()?,
            root,
        })
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.volumes().join(name)
    }

    /// Where a volume's files are.
    pub fn data(&self, name: &str) -> PathBuf {
        self.dir(name).join("_data")
    }

    pub fn get(&self, name: &str) -> Result<Option<Volume>> {
        Ok(match self.db.get(&vol_key(name))? {
            Some(v) => Some(Volume {
                name: name.to_string(),
                meta: bincode::deserialize(&v).context("corrupt volume record")?,
            }),
            None => None,
        })
    }

    /// Create volume `name` (a random name when `None`) unless it exists; returns it and
    /// whether it is new.
    pub fn create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<(Volume, bool)> {
        let name = match name {
            Some(n) => {
                check_volume_name(n)?;
                n.to_string()
            }
            None => random_name(),
        };
        if let Some(v) = self.get(&name)? {
            return Ok((v, false));
        }
        let data = self.data(&name);
        fs::create_dir_all(&data).with_context(|| format!("volume {}", data.display()))?;
        let meta = Meta {
            created: now(),
            labels,
            anonymous: false,
        };
        self.db.put(&vol_key(&name), &bincode::serialize(&meta)?)?;
        Ok((Volume { name, meta }, true))
    }

    pub fn mark_anonymous(&self, v: &mut Volume) -> Result<()> {
        v.meta.anonymous = true;
        self.db
            .put(&vol_key(&v.name), &bincode::serialize(&v.meta)?)
    }

    pub fn list(&self) -> Result<Vec<Volume>> {
        let mut out = Vec::new();
        for (k, v) in self.db.scan(b"vol\0")? {
            out.push(Volume {
                name: String::from_utf8_lossy(&k[4..]).into_owned(),
                meta: bincode::deserialize(&v).context("corrupt volume record")?,
            });
        }
        Ok(out)
    }

    /// The live mounts using volume `name`. Records of mounts whose daemon is gone (killed)
    /// are dropped on the way.
    pub fn users(&self, name: &str) -> Result<Vec<User>> {
        let mut out = Vec::new();
        for (k, v) in self.db.scan(&use_prefix(name))? {
            match bincode::deserialize::<User>(&v) {
                Ok(u) if state::alive(u.pid, u.start) => out.push(u),
                _ => self.db.delete(&k)?,
            }
        }
        Ok(out)
    }

    /// Record that this process serves volume `name` at `mountpoint`.
    pub fn add_user(&self, name: &str, mountpoint: &Path) -> Result<()> {
        let pid = std::process::id();
        let u = User {
            mountpoint: mountpoint.to_path_buf(),
            pid,
            start: state::start_time(pid).unwrap_or(0),
        };
        self.db.put(&use_key(name, pid), &bincode::serialize(&u)?)
    }

    pub fn remove_user(&self, name: &str) -> Result<()> {
        self.db.delete(&use_key(name, std::process::id()))
    }

    /// Remove a volume nothing uses: its record first, then its files (moved aside before they
    /// are deleted, so a crash never leaves a half-emptied volume under its name).
    pub fn remove(&self, name: &str) -> Result<()> {
        if self.get(name)?.is_none() {
            bail!("no such volume: {name}");
        }
        if let Some(u) = self.users(name)?.first() {
            bail!(
                "volume {name} is in use by the strata mount at {} (pid {})",
                u.mountpoint.display(),
                u.pid
            );
        }
        let dir = self.dir(name);
        let trash = self
            .root
            .volumes()
            .join(format!(".removing-{}-{name}", std::process::id()));
        let moved = match fs::rename(&dir, &trash) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            // Nothing is changed: the volume keeps its record and its files.
            Err(e) => bail!("volume {name}: {e}"),
        };
        self.db.delete(&vol_key(name))?;
        if moved {
            remove_all(&trash)?;
        }
        Ok(())
    }

    /// Size in bytes of what a volume holds (allocated blocks), for `prune`'s report.
    pub fn size(&self, name: &str) -> u64 {
        du(&self.data(name))
    }
}

fn remove_all(p: &Path) -> Result<()> {
    let parent = fs::File::open(p.parent().unwrap_or(Path::new("/")))?;
    let name = p.file_name().unwrap_or_default();
    crate::union::dir::remove_tree(parent.as_raw_fd(), name).map_err(|e| {
        anyhow!(
            "removing {}: {}",
            p.display(),
            std::io::Error::from_raw_os_error(e)
        )
    })
}

fn du(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(md) = fs::symlink_metadata(p) else {
        return 0;
    };
    let mut total = md.blocks() * 512;
    if md.is_dir() {
        if let Ok(rd) = fs::read_dir(p) {
            for e in rd.flatten() {
                total += du(&e.path());
            }
        }
    }
    total
}

pub fn now() -> i64 {
    crate::time::now_secs()
}

/// RFC 3339 in UTC, e.g. 2026-11-23T10:00:00Z.
pub fn rfc3339(secs: i64) -> String {
    crate::time::rfc3339(secs, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951782400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1795428000), "2026-11-23T10:00:00Z");
    }

    #[test]
    fn random_names_are_64_hex() {
        let a = random_name();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_name());
    }

    #[test]
    fn create_list_use_remove() {
        let d = tempfile::tempdir().unwrap();
        let root = Root {
            path: d.path().to_path_buf(),
        };
        let s = Store::open(&root).unwrap();
        let (v, new) = s.create(Some("db"), BTreeMap::new()).unwrap();
        assert!(new && s.data("db").is_dir());
        assert!(!s.create(Some("db"), BTreeMap::new()).unwrap().1);
        assert_eq!(s.list().unwrap().len(), 1);
        s.add_user(&v.name, Path::new("/mnt")).unwrap();
        let err = s.remove("db").unwrap_err().to_string();
        assert!(err.contains("/mnt"), "{err}");
        s.remove_user(&v.name).unwrap();
        s.remove("db").unwrap();
        assert!(!s.dir("db").exists());
        assert!(s.list().unwrap().is_empty());
        assert!(s.create(Some("../x"), BTreeMap::new()).is_err());
    }
}
