//! The container's root: its rootfs directory as the lower layer of a union with the
//! container's own upper and work directories, mounted at `merged/`.
//!
//! For now this runs the `strata mount` code path as its own process (the same binary), which
//! serves the union in the background until `strata umount`; it is the one place to change
//! when the mount's lifecycle is a library module of its own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::state::Root;

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

fn strata(root: &Root) -> Result<Command> {
    let exe = std::env::current_exe().context("cannot find the strata binary")?;
    let mut c = Command::new(exe);
    c.arg("--root")
        .arg(&root.path)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    Ok(c)
}

/// Run `cmd`; its stderr goes to a file (the daemon it leaves behind keeps its own copy, so a
/// pipe would never close), whose last line becomes the error.
fn run(mut cmd: Command, dir: &Path, what: &str) -> Result<()> {
    let errf = dir.join(format!("{what}.err"));
    let f = fs::File::create(&errf).with_context(|| format!("create {}", errf.display()))?;
    let st = cmd
        .stderr(f)
        .status()
        .with_context(|| format!("cannot run strata {what}"))?;
    let text = fs::read_to_string(&errf).unwrap_or_default();
    let _ = fs::remove_file(&errf);
    if !st.success() {
        let line = text.lines().last().unwrap_or("").trim();
        bail!("{what}: {}", line.strip_prefix("strata: ").unwrap_or(line));
    }
    Ok(())
}

/// Mount the union of `lower` and the container directory's `upper`/`work` at its `merged/`.
pub fn mount_root(root: &Root, lower: &Path, dir: &Path) -> Result<RootMount> {
    let merged = dir.join("merged");
    let mut c = strata(root)?;
    c.arg("mount")
        .arg("-o")
        .arg(format!(
            "lowerdir={},upperdir={},workdir={}",
            esc(lower),
            esc(&dir.join("upper")),
            esc(&dir.join("work"))
        ))
        .arg(&merged);
    run(c, dir, "mount")?;
    Ok(RootMount { merged })
}

impl RootMount {
    pub fn unmount(&self, root: &Root) -> Result<()> {
        let mut c = strata(root)?;
        c.arg("umount").arg(&self.merged);
        let dir = self.merged.parent().unwrap_or(Path::new("/"));
        run(c, dir, "umount")
    }
}
