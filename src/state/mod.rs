//! The state root (`--root`, `STRATA_ROOT`, default /var/lib/strata): what outlives a mount.
//!
//! Layout: `db/` is a RocksDB database of the records (volumes, and which live mounts use
//! them); `volumes/NAME/_data` holds a volume's files. Every reader and writer takes `lock`
//! (flock) for the short time it has the database open, so several strata processes, daemons
//! and verbs alike, can work on one root.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use anyhow::{Context, Result};

pub struct Root {
    pub path: PathBuf,
}

/// An open, locked state root.
pub struct Locked {
    pub db: rocksdb::DB,
    _lock: fs::File,
}

impl Root {
    /// `--root` if given (clap also reads STRATA_ROOT into it), else the default: /var/lib/strata
    /// for root, `$XDG_DATA_HOME/strata` (or ~/.local/share/strata) for others.
    pub fn locate(given: Option<PathBuf>) -> Root {
        let path = given.unwrap_or_else(|| {
            if crate::sys::geteuid() == 0 {
                return PathBuf::from("/var/lib/strata");
            }
            match std::env::var_os("XDG_DATA_HOME") {
                Some(d) if !d.is_empty() => PathBuf::from(d).join("strata"),
                _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/".into()))
                    .join(".local/share/strata"),
            }
        });
        Root { path }
    }

    pub fn volumes(&self) -> PathBuf {
        self.path.join("volumes")
    }

    /// Lock the root and open its database, making both if this is a new root.
    pub fn open(&self) -> Result<Locked> {
        let what = || format!("state root {}", self.path.display());
        fs::create_dir_all(self.volumes()).with_context(what)?;
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path.join("lock"))
            .with_context(what)?;
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error()).with_context(what);
        }
        let db = crate::inode::open_db(&self.path.join("db"), 1 << 20).with_context(what)?;
        Ok(Locked { db, _lock: lock })
    }
}

impl Locked {
    /// Write with the log synced: a record is on disk when this returns.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut w = rocksdb::WriteOptions::default();
        w.set_sync(true);
        self.db.put_opt(key, value, &w)?;
        Ok(())
    }

    pub fn delete(&self, key: &[u8]) -> Result<()> {
        let mut w = rocksdb::WriteOptions::default();
        w.set_sync(true);
        self.db.delete_opt(key, &w)?;
        Ok(())
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?)
    }

    /// Every (key, value) whose key starts with `prefix`, in key order.
    pub fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self.db.prefix_iterator(prefix) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

/// Is process `pid`, started at `start` (clock ticks after boot), still running? A killed
/// process its parent has not reaped yet (a zombie) is not.
pub fn alive(pid: u32, start: u64) -> bool {
    matches!(proc_stat(pid), Some((state, t)) if t == start && state != 'Z' && state != 'X')
}

/// The start time of process `pid` (field 22 of /proc/PID/stat), which tells a process from a
/// later one that reuses its pid.
pub fn start_time(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, t)| t)
}

/// (state, start time) of process `pid`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its closing one.
    let mut rest = s[s.rfind(')')? + 2..].split(' ');
    let state = rest.next()?.chars().next()?;
    Some((state, rest.nth(18)?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_tells_this_process_from_others() {
        let me = std::process::id();
        let t = start_time(me).unwrap();
        assert!(alive(me, t));
        assert!(!alive(me, t + 1));
        assert!(!alive(u32::MAX - 1, t));
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let child = unsafe { libc::fork() };
        if child == 0 {
            unsafe { libc::_exit(0) };
        }
        let pid = child as u32;
        let t = start_time(pid).unwrap();
        // Not reaped: a zombie until waitpid below.
        while proc_stat(pid).map(|(s, _)| s) != Some('Z') {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!alive(pid, t));
        unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
    }

    #[test]
    fn records_survive_reopen() {
        let d = tempfile::tempdir().unwrap();
        let root = Root {
            path: d.path().join("r"),
        };
        {
            let l = root.open().unwrap();
            l.put(b"vol\0a", b"1").unwrap();
            l.put(b"vol\0b", b"2").unwrap();
            l.put(b"use\0a", b"3").unwrap();
            l.delete(b"vol\0b").unwrap();
        }
        let l = root.open().unwrap();
        let vols = l.scan(b"vol\0").unwrap();
        assert_eq!(vols, vec![(b"vol\0a".to_vec(), b"1".to_vec())]);
    }
}
