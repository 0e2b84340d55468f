//! The record a live mount leaves beside its pid file: its layers, the options that change how
//! they are read, and its grafts with their sources, so that `strata explain` and `strata
//! layers` can read the same layers the daemon serves. Written once the mount is live, removed
//! when it ends; a record whose daemon is gone is not trusted.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MountRecord {
    pub mountpoint: PathBuf,
    pub pid: u32,
    /// Top-most first.
    pub lowers: Vec<PathBuf>,
    pub upper: Option<PathBuf>,
    pub work: Option<PathBuf>,
    pub read_only: bool,
    pub redirect_follow: bool,
    /// Whiteouts are char devices 0:0 in the upper (else `.wh.` files).
    pub kernel_whiteouts: bool,
    /// "trusted" or "user": where the upper's overlay xattrs go.
    pub xattr_ns: String,
    /// Grafts in the order they were joined in (the order of their node id ranges).
    pub grafts: Vec<GraftRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GraftRecord {
    /// Absolute path inside the mount.
    pub target: PathBuf,
    /// bind, volume or tmpfs.
    pub kind: String,
    /// The directory served (a volume's _data, a tmpfs stand-in, a bind source or, for a
    /// single-file bind, the file's directory).
    pub source: PathBuf,
    /// For a single-file bind: the file's name in `source`.
    pub file: Option<String>,
    pub volume: Option<String>,
    pub read_only: bool,
}

fn record_file(mountpoint: &Path) -> Option<PathBuf> {
    let pid = super::unmount::pid_file(mountpoint)?;
    Some(pid.with_extension("mount.json"))
}

/// Leave the record of the mount at `rec.mountpoint`; returns where, for `remove`.
pub fn write(rec: &MountRecord) -> Option<PathBuf> {
    let p = record_file(&rec.mountpoint)?;
    let tmp = p.with_extension("tmp");
    let text = serde_json::to_vec_pretty(rec).ok()?;
    match fs::write(&tmp, text).and_then(|()| fs::rename(&tmp, &p)) {
        Ok(()) => Some(p),
        Err(e) => {
            log::warn!("cannot record the mount in {}: {e}", p.display());
            None
        }
    }
}

pub fn remove(p: &Path) {
    let _ = fs::remove_file(p);
}

/// The record of the live strata mount at `mountpoint` (canonical).
pub fn read(mountpoint: &Path) -> Result<MountRecord> {
    let p = record_file(mountpoint)
        .ok_or_else(|| anyhow!("no runtime directory to find the mount's record in"))?;
    let text = fs::read(&p).with_context(|| {
        format!(
            "{} is a strata mount, but its daemon left no record of its layers ({})",
            mountpoint.display(),
            p.display()
        )
    })?;
    let rec: MountRecord = serde_json::from_slice(&text)
        .with_context(|| format!("the mount record {} is corrupt", p.display()))?;
    if !Path::new(&format!("/proc/{}", rec.pid)).exists() {
        anyhow::bail!(
            "the record of {} names daemon {}, which is gone",
            mountpoint.display(),
            rec.pid
        );
    }
    Ok(rec)
}

/// A remount changed the mount's read-only flag: the record says so too.
pub fn set_read_only(mountpoint: &Path, ro: bool) {
    let Some(p) = record_file(mountpoint) else {
        return;
    };
    let Ok(text) = fs::read(&p) else { return };
    let Ok(mut rec) = serde_json::from_slice::<MountRecord>(&text) else {
        return;
    };
    rec.read_only = ro;
    let _ = write(&rec);
}
