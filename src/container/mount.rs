//! The container's root: its image's layers (or its rootfs directory) as the lower layers of a
//! union with the container's own upper and work directories, mounted at `merged/` through the same code
//! path as `strata mount` (src/daemon/): checked, served in the background by a daemon
//! forked from this process, and unmounted with a wait for that daemon to flush and exit.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::daemon;
use crate::state::Root;
use crate::volume::spec::Graft;

/// A mounted container root; [`RootMount::unmount`] takes it down.
pub struct RootMount {
    pub merged: PathBuf,
}

/// Escape `\`, `:` and `,` in a path for `-o lowerdir=...`.
fn esc(p: &Path) -> String {
    let mut s = String::new();
    for c in p.to_string_lossy().chars() {
        if matches!(c, '\\' | ':' | ',') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// Mount the union of `lowers` (top-most first) and the container directory's `upper`/`work`
/// at its `merged/`, with `grafts` (outer ones first) served inside it.
/// The daemon is forked from this process, which must have no threads yet.
pub fn mount_root(
    root: &Root,
    lowers: &[PathBuf],
    grafts: Vec<Graft>,
    dir: &Path,
) -> Result<RootMount> {
    let merged = dir.join("merged");
    // A container's daemon mostly waits, and there is one per container. glibc raises its mmap
    // threshold to the size of each large mapped block freed; once a 16 MiB one has gone, the
    // FUSE session's 16 MiB request buffer comes from a worker thread's heap, where calloc
    // zeroes, and so makes resident, all of it. With the threshold fixed, that buffer is mapped
    // afresh and only the pages requests touch are resident: 16 MiB less per idle container.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20) };
    daemon::mount(daemon::MountRequest {
        options: vec![format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.iter().map(|l| esc(l)).collect::<Vec<_>>().join(":"),
            esc(&dir.join("upper")),
            esc(&dir.join("work"))
        )],
        source: None,
        mountpoint: merged.clone(),
        foreground: false,
        log: None,
        grafts,
        root: Some(root.path.clone()),
    })?;
    Ok(RootMount { merged })
}

impl RootMount {
    pub fn unmount(&self) -> Result<()> {
        daemon::umount(&self.merged)
    }
}
