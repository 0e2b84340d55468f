//! The explanation of one path in a mount: which layer supplies it and why no other does, its
//! copy-up, its st_ino and how that number was assigned, and for a directory the layers merged
//! into it. What is visible is decided by the union's own lookup (`Union::find`); the layers
//! are then read one by one only to say what hides what.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use serde::Serialize;

use super::hides::{hidden, redirect_on_way};
use super::probe::{self, kind_name};
use super::view::View;
use crate::daemon::record::GraftRecord;
use crate::union::{Found, Union, ROOT_ID};

/// A place in one layer (or graft source).
#[derive(Clone, Debug, Serialize)]
pub struct Where {
    /// upper, lower N, graft, init file.
    pub layer: String,
    /// 0 for the upper, N for lower N; none for a graft.
    pub index: Option<usize>,
    /// The layer's directory on the host.
    pub dir: String,
    /// The path inside that directory.
    pub path: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct GraftInfo {
    pub kind: String,
    pub target: String,
    pub source: String,
    pub mode: String,
    pub volume: Option<String>,
    pub init_file: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Cause {
    /// whiteout, opaque, covered, redirect, graft.
    pub what: String,
    /// The layer holding what hides it (upper, lower N, graft).
    pub layer: String,
    /// The merged path it is at.
    pub path: String,
    pub format: Option<String>,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Hidden {
    pub at: Where,
    pub kind: String,
    pub by: Option<Cause>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Merged {
    pub at: Where,
    /// Entries that directory holds.
    pub entries: usize,
    /// Entries of the merged listing this layer supplies.
    pub shown: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Inode {
    pub st_ino: u64,
    pub how: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// The path as given.
    pub path: String,
    pub mount: String,
    /// The path inside the mount.
    pub merged_path: String,
    pub visible: bool,
    pub kind: Option<String>,
    pub supplied_by: Option<Where>,
    pub graft: Option<GraftInfo>,
    pub redirect: Option<String>,
    pub copied_up: Option<bool>,
    pub copy_up: Option<String>,
    pub inode: Option<Inode>,
    pub merged: Vec<Merged>,
    pub hidden: Vec<Hidden>,
}

pub(super) fn errno(e: i32) -> anyhow::Error {
    anyhow!("{}", std::io::Error::from_raw_os_error(e))
}

pub(super) fn slash(p: &Path) -> String {
    format!("/{}", p.display())
}

enum Walk {
    /// The last name, found in directory `pst` at `ppath`.
    Found(Found),
    Missing,
}

/// Look `rel` up in `u` name by name, as the kernel walks a path (without following a symlink).
fn walk(u: &Union, rel: &Path) -> Result<Walk> {
    let comps: Vec<OsString> = rel.iter().map(|c| c.to_os_string()).collect();
    let mut id = ROOT_ID;
    for (i, c) in comps.iter().enumerate() {
        let (pst, ppath) = u.resolve(id).map_err(errno)?;
        if !pst.is_dir() || u.is_marker_name(c) {
            return Ok(Walk::Missing);
        }
        let Some(found) = u.find(&pst, &ppath, c).map_err(errno)? else {
            return Ok(Walk::Missing);
        };
        if i + 1 == comps.len() {
            return Ok(Walk::Found(found));
        }
        id = u.remember(id, c, &found).id;
    }
    Ok(Walk::Missing)
}

pub(super) fn at(view: &View, i: usize, path: &Path) -> Where {
    Where {
        layer: View::layer_name(i),
        index: Some(i),
        dir: view.layer_dir(i).display().to_string(),
        path: slash(path),
    }
}

fn graft_info(view: &View, g: &GraftRecord) -> GraftInfo {
    let source = match &g.file {
        Some(f) => g.source.join(f),
        None => g.source.clone(),
    };
    GraftInfo {
        kind: g.kind.clone(),
        target: g.target.display().to_string(),
        source: source.display().to_string(),
        mode: if g.read_only { "ro" } else { "rw" }.into(),
        volume: g.volume.clone(),
        init_file: view.is_init_file(g),
    }
}

/// The layers merged into directory `dir` (found at `rel`) and what each gives.
fn merged(
    u: &Union,
    found: &Found,
    rel: &Path,
    name: impl Fn(usize, &Path) -> Where,
) -> Result<Vec<Merged>> {
    let st = found.state(ROOT_ID, rel.file_name().unwrap_or_default());
    let mut layers: Vec<(usize, PathBuf)> = Vec::new();
    if st.upper {
        layers.push((0, rel.to_path_buf()));
    }
    layers.extend(st.lowers.iter().map(|l| (l.layer, l.path.clone())));
    let mut shown = vec![0usize; layers.len()];
    for e in u.merged_entries(&st, rel).map_err(errno)? {
        if let Some(f) = u.find_shallow(&st, rel, &e.name).map_err(errno)? {
            let top = if f.upper.is_some() {
                0
            } else {
                f.lowers[0].0.layer
            };
            if let Some(k) = layers.iter().position(|(l, _)| *l == top) {
                shown[k] += 1;
            }
        }
    }
    let mut out = Vec::new();
    for (k, (l, p)) in layers.iter().enumerate() {
        out.push(Merged {
            at: name(*l, p),
            entries: probe::own_entries(u, *l, p).map_err(errno)?,
            shown: shown[k],
        });
    }
    Ok(out)
}

/// st_ino of what `found` describes in the main union, and how it was assigned.
fn inode(view: &View, found: &Found, rel: &Path) -> Inode {
    let u = &view.union;
    let enc = "st_ino = (layer + 1) << 48 | inode in that layer";
    if let Some(up) = &found.upper {
        if let Some(rec) = u.inodes.record(up.st_ino) {
            return Inode {
                st_ino: rec.ino,
                how: format!(
                    "kept across copy-up: the inode table maps upper inode {} to {}, the number it had below",
                    up.st_ino, rec.ino
                ),
            };
        }
        let is_dir = up.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if !is_dir {
            if let Some(n) = probe::copy_number(u, rel) {
                return Inode {
                    st_ino: n,
                    how: format!(
                        "kept across copy-up: the copy carries {n} in its {} xattr",
                        u.opts.xattr_ns.ino()
                    ),
                };
            }
        }
        let id = u.ino_of(found);
        if let (true, Some((l, st))) = (is_dir, found.lowers.first()) {
            return Inode {
                st_ino: id,
                how: format!(
                    "a merged directory shows the number of its top-most lower directory: inode {} of lower {} ({enc})",
                    st.st_ino, l.layer
                ),
            };
        }
        return Inode {
            st_ino: id,
            how: format!(
                "new in the upper: inode {} of the upper ({enc}, layer 0)",
                up.st_ino
            ),
        };
    }
    let (l, st) = &found.lowers[0];
    Inode {
        st_ino: u.ino_of(found),
        how: format!("inode {} of lower {} ({enc})", st.st_ino, l.layer),
    }
}

fn copy_up(view: &View, found: &Found, rel: &Path, hidden: &[Hidden]) -> (bool, String) {
    let u = &view.union;
    let Some(up) = &found.upper else {
        let l = found.lowers[0].0.layer;
        return (false, format!("not copied up: read from lower {l}"));
    };
    if up.st_mode & libc::S_IFMT == libc::S_IFDIR {
        if let Some((l, _)) = found.lowers.first() {
            return (
                true,
                format!(
                    "copied up: the upper directory merges with {} lower one(s), from lower {} down",
                    found.lowers.len(),
                    l.layer
                ),
            );
        }
        if !hidden.is_empty() {
            return (
                false,
                "made in the upper over what the lower layers have there (an opaque directory)"
                    .into(),
            );
        }
        return (false, "made in the upper: no lower layer has it".into());
    }
    if u.inodes.record(up.st_ino).is_some() || probe::copy_number(u, rel).is_some() {
        let from = hidden
            .iter()
            .find(|h| {
                h.by.as_ref()
                    .is_some_and(|c| c.what == "covered" && c.layer == "upper")
            })
            .map(|h| format!(" from {}", h.at.layer))
            .unwrap_or_default();
        return (true, format!("copied up{from}: the upper holds the copy"));
    }
    if hidden.is_empty() {
        (false, "made in the upper: no lower layer has it".into())
    } else {
        (
            false,
            "made in the upper, over what a lower layer has there".into(),
        )
    }
}

fn base(given: &Path, view: &View, rel: &Path) -> Explanation {
    Explanation {
        path: given.display().to_string(),
        mount: view.rec.mountpoint.display().to_string(),
        merged_path: slash(rel),
        visible: false,
        kind: None,
        supplied_by: None,
        graft: None,
        redirect: None,
        copied_up: None,
        copy_up: None,
        inode: None,
        merged: Vec::new(),
        hidden: Vec::new(),
    }
}

/// Explain `rel` (a path inside the mount of `view`); `given` is the path as the user wrote it.
pub fn explain(view: &View, given: &Path, rel: &Path) -> Result<Explanation> {
    let mut ex = base(given, view, rel);
    if let Some(gi) = view.graft_of(rel) {
        return explain_graft(view, gi, rel, ex);
    }
    let u = &view.union;
    if rel.as_os_str().is_empty() {
        let top = view.layer_indexes()[0];
        let st = u.getattr(ROOT_ID).map_err(errno)?;
        ex.visible = true;
        ex.kind = Some("directory".into());
        ex.supplied_by = Some(at(view, top, rel));
        ex.inode = Some(Inode {
            st_ino: st.st_ino,
            how: format!("the root directory of the {}", View::layer_name(top)),
        });
        let found = Found {
            upper: u.upper.as_ref().map(|_| st),
            lowers: (1..=u.lowers.len())
                .map(|l| {
                    (
                        crate::union::Loc {
                            layer: l,
                            path: PathBuf::new(),
                        },
                        st,
                    )
                })
                .collect(),
        };
        ex.merged = merged(u, &found, rel, |l, p| at(view, l, p))?;
        return Ok(ex);
    }
    match walk(u, rel)? {
        Walk::Missing => {
            ex.hidden = hidden(view, rel, &[], None)?;
            if ex.hidden.is_empty() {
                return Err(anyhow!(
                    "{}: no layer of the mount {} has {}",
                    given.display(),
                    view.rec.mountpoint.display(),
                    slash(rel)
                ));
            }
        }
        Walk::Found(found) => {
            let top = if found.upper.is_some() {
                0
            } else {
                found.lowers[0].0.layer
            };
            let top_path = if top == 0 {
                rel.to_path_buf()
            } else {
                found.lowers[0].0.path.clone()
            };
            ex.visible = true;
            ex.kind = Some(kind_name(found.kind()).into());
            ex.supplied_by = Some(at(view, top, &top_path));
            let mut shown: Vec<usize> = Vec::new();
            if found.upper.is_some() {
                shown.push(0);
            }
            for (l, _) in &found.lowers {
                if l.path == rel {
                    shown.push(l.layer);
                }
            }
            if found.lowers.iter().any(|(l, _)| l.path != rel) {
                ex.redirect = redirect_on_way(view, rel);
            }
            ex.hidden = hidden(view, rel, &shown, None)?;
            let (copied, how) = copy_up(view, &found, rel, &ex.hidden);
            ex.copied_up = Some(copied);
            ex.copy_up = Some(how);
            ex.inode = Some(inode(view, &found, rel));
            if found.kind() == libc::S_IFDIR {
                ex.merged = merged(u, &found, rel, |l, p| at(view, l, p))?;
            }
        }
    }
    Ok(ex)
}

fn explain_graft(view: &View, gi: usize, rel: &Path, mut ex: Explanation) -> Result<Explanation> {
    let (g, gu) = &view.grafts[gi];
    let info = graft_info(view, g);
    let inner = Path::new("/").join(rel);
    let inner = inner
        .strip_prefix(&g.target)
        .unwrap_or(Path::new(""))
        .to_path_buf();
    let layer = if info.init_file { "init file" } else { "graft" };
    let what = if info.init_file {
        format!(
            "the file the container's runtime writes for {}",
            info.target
        )
    } else {
        format!(
            "the {} graft at {} ({}, {})",
            info.kind,
            info.target,
            info.volume.as_deref().unwrap_or(&info.source),
            info.mode
        )
    };
    let cause = Cause {
        what: "graft".into(),
        layer: layer.into(),
        path: info.target.clone(),
        format: None,
        detail: format!("{what} stands over it"),
    };
    let where_ = |p: &Path| Where {
        layer: layer.into(),
        index: None,
        dir: g.source.display().to_string(),
        path: slash(p),
    };
    // Inside the graft's own union, the path is `file` (single-file graft) or `inner`.
    let local: Option<PathBuf> = match &g.file {
        Some(f) if inner.as_os_str().is_empty() => Some(PathBuf::from(f)),
        Some(_) => None, // nothing lies below a file
        None => Some(inner.clone()),
    };
    ex.graft = Some(info);
    ex.hidden = hidden(view, rel, &[], Some(&cause))?;
    if local.as_ref().is_some_and(|l| l.as_os_str().is_empty()) {
        let st = gu.getattr(ROOT_ID).map_err(errno)?;
        ex.visible = true;
        ex.kind = Some("directory".into());
        ex.supplied_by = Some(where_(Path::new("")));
        ex.inode = Some(Inode {
            st_ino: st.st_ino,
            how: format!(
                "the graft's source directory, inode {} there, in the graft's own range of numbers",
                root_ino(&g.source)
            ),
        });
        let found = Found {
            upper: Some(st),
            lowers: Vec::new(),
        };
        ex.merged = merged(gu, &found, Path::new(""), |_, p| where_(p))?;
        return Ok(ex);
    }
    let walked = match &local {
        Some(l) => walk(gu, l)?,
        None => Walk::Missing,
    };
    let local = local.unwrap_or_default();
    match walked {
        Walk::Missing => {
            if ex.hidden.is_empty() {
                return Err(anyhow!(
                    "{}: the graft at {} has no {}",
                    ex.path,
                    g.target.display(),
                    slash(&inner)
                ));
            }
        }
        Walk::Found(found) => {
            let up = found.upper.expect("a graft's union has only its source");
            ex.visible = true;
            ex.kind = Some(kind_name(found.kind()).into());
            ex.supplied_by = Some(where_(&local));
            ex.inode = Some(Inode {
                st_ino: gu.ino_of(&found),
                how: format!(
                    "inode {} of the graft's source, in the graft's own range of numbers",
                    up.st_ino
                ),
            });
            if found.kind() == libc::S_IFDIR {
                ex.merged = merged(gu, &found, &local, |_, p| where_(p))?;
            }
        }
    }
    Ok(ex)
}

fn root_ino(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).map(|m| m.ino()).unwrap_or(0)
}
