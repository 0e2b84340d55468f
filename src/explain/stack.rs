//! The stack `strata layers` draws: a mount's layers (upper on top), each with its path, size
//! and entry count, and its grafts with their targets. A mount is read from its record; a
//! container from its record (or its live mount), an image from the image store.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::daemon::record::{self, MountRecord};
use crate::state::Root;

#[derive(Clone, Debug, Serialize)]
pub struct StackLayer {
    /// upper, lower N.
    pub name: String,
    pub path: String,
    /// Bytes of file data (what `du --apparent-size` counts).
    pub size: u64,
    /// Entries below the layer's root (whiteouts and markers included: they are entries of
    /// the layer).
    pub entries: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StackGraft {
    pub target: String,
    pub kind: String,
    pub source: String,
    pub mode: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Stack {
    /// What the stack is of: mount DIR, container NAME, image NAME.
    pub title: String,
    /// Top-most first.
    pub layers: Vec<StackLayer>,
    pub grafts: Vec<StackGraft>,
}

/// Size and entry count of the tree at `p`, never following a symlink.
fn measure(p: &Path) -> (u64, u64) {
    let (mut size, mut entries) = (0, 0);
    let mut todo = vec![p.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            entries += 1;
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                todo.push(e.path());
            } else if md.is_file() {
                size += md.size();
            }
        }
    }
    (size, entries)
}

fn layer(name: String, p: &Path) -> StackLayer {
    let (size, entries) = measure(p);
    StackLayer {
        name,
        path: p.display().to_string(),
        size,
        entries,
    }
}

fn layers(upper: Option<&Path>, lowers: &[PathBuf]) -> Vec<StackLayer> {
    let mut out = Vec::new();
    if let Some(u) = upper {
        out.push(layer("upper".into(), u));
    }
    for (i, l) in lowers.iter().enumerate() {
        out.push(layer(format!("lower {}", i + 1), l));
    }
    out
}

/// "init file" for one of the /etc files a container's runtime writes in its own directory
/// (`dir`) and binds over the image's, else `kind`.
fn kind_of(kind: &str, target: &Path, source: &Path, dir: Option<&Path>) -> String {
    let init = crate::container::etc::FILES
        .iter()
        .any(|(name, dst)| target == Path::new(dst) && dir.is_some_and(|d| source == d.join(name)));
    if init { "init file" } else { kind }.into()
}

fn of_record(title: String, rec: &MountRecord) -> Stack {
    let dir = rec.mountpoint.parent();
    Stack {
        title,
        layers: layers(rec.upper.as_deref(), &rec.lowers),
        grafts: rec
            .grafts
            .iter()
            .map(|g| StackGraft {
                target: g.target.display().to_string(),
                kind: kind_of(
                    &g.kind,
                    &g.target,
                    &g.source.join(g.file.as_deref().unwrap_or("")),
                    dir,
                ),
                source: match (&g.volume, &g.file) {
                    (Some(v), _) => format!("{v} ({})", g.source.display()),
                    (None, Some(f)) => g.source.join(f).display().to_string(),
                    (None, None) => g.source.display().to_string(),
                },
                mode: if g.read_only { "ro" } else { "rw" }.into(),
            })
            .collect(),
    }
}

fn is_strata_mount(p: &Path) -> bool {
    crate::daemon::mount_points()
        .iter()
        .any(|(m, kind)| m == p && kind == "fuse.strata")
}

/// The stack of `what`: a strata mountpoint, else a container, else an image.
pub fn of(root: &Root, what: &str) -> Result<Stack> {
    if let Ok(mp) = Path::new(what).canonicalize() {
        if is_strata_mount(&mp) {
            let rec = record::read(&mp)?;
            return Ok(of_record(format!("mount {}", mp.display()), &rec));
        }
    }
    let store = crate::container::records::Store::new(root);
    if store.dir.is_dir() {
        let lock = store.lock()?;
        if let Ok(c) = store.find(&lock, what) {
            drop(lock);
            let dir = store.container_dir(&c.id);
            let merged = dir.join("merged");
            let title = format!("container {}", c.name);
            if is_strata_mount(&merged) {
                return Ok(of_record(title, &record::read(&merged)?));
            }
            let mut s = Stack {
                title,
                layers: layers(Some(&dir.join("upper")), &c.lowers),
                grafts: Vec::new(),
            };
            for g in &c.grafts {
                let g = crate::container::grafts::parse(g)?;
                use crate::volume::spec::Source;
                let (kind, source) = match &g.source {
                    Source::Bind(p) => ("bind", p.display().to_string()),
                    Source::Volume(Some(n)) => ("volume", n.clone()),
                    Source::Volume(None) => ("volume", "(anonymous)".into()),
                    Source::Tmpfs { .. } => ("tmpfs", "tmpfs".into()),
                };
                let src = match &g.source {
                    Source::Bind(p) => p.clone(),
                    _ => PathBuf::new(),
                };
                s.grafts.push(StackGraft {
                    target: g.target.display().to_string(),
                    kind: kind_of(kind, &g.target, &src, Some(&dir)),
                    source,
                    mode: if g.read_only { "ro" } else { "rw" }.into(),
                });
            }
            return Ok(s);
        }
    }
    match crate::image::ops::for_run(root, what) {
        Ok(img) => Ok(Stack {
            title: format!("image {what}"),
            layers: layers(None, &img.layers),
            grafts: Vec::new(),
        }),
        Err(_) => bail!("{what}: no such strata mount, container or image"),
    }
}

/// A size as `ls -sh` prints it.
pub fn human(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}
