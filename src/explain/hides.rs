//! Why a layer's entry is not what the mount shows: the first thing above it on the way down
//! its path (a whiteout, an opaque directory, a file or directory on top, a redirect, a graft),
//! read layer by layer with explain::probe.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::path::{at, errno, slash, Cause, Hidden};
use super::probe::{self, kind_name, Raw};
use super::view::View;

/// Why layer `l`'s entry at `rel` is not what the mount shows: the first thing above it on
/// the way down the path, as a lookup meets it.
fn cause(view: &View, l: usize, lkind: u32, rel: &Path) -> Result<Option<Cause>> {
    let u = &view.union;
    let comps: Vec<_> = rel.iter().collect();
    let mut p = PathBuf::new();
    for (j, c) in comps.iter().enumerate() {
        p.push(c);
        let last = j + 1 == comps.len();
        for i in view.layer_indexes().into_iter().filter(|&i| i < l) {
            let name = View::layer_name(i);
            let mk = |what: &str, format: Option<String>, detail: String| Cause {
                what: what.into(),
                layer: name.clone(),
                path: slash(&p),
                format,
                detail,
            };
            match probe::raw(u, i, &p).map_err(errno)? {
                Raw::Absent => {}
                Raw::Whiteout(f) => {
                    return Ok(Some(mk(
                        "whiteout",
                        Some(f.into()),
                        format!("{name} deletes {} with a whiteout", slash(&p)),
                    )))
                }
                Raw::Entry {
                    kind,
                    opaque,
                    redirect,
                } => {
                    if kind != libc::S_IFDIR {
                        let detail = if last {
                            format!("{name} has {} on top of it", slash(&p))
                        } else {
                            format!(
                                "{name} has a {} at {}, which hides every directory there below it",
                                kind_name(kind),
                                slash(&p)
                            )
                        };
                        return Ok(Some(mk("covered", None, detail)));
                    }
                    if last && lkind != libc::S_IFDIR {
                        return Ok(Some(mk(
                            "covered",
                            None,
                            format!("{name} has a directory at {} on top of it (only directories merge)", slash(&p)),
                        )));
                    }
                    if let Some(f) = opaque {
                        return Ok(Some(mk(
                            "opaque",
                            Some(f),
                            format!(
                                "{name}'s directory {} is opaque: nothing below it is merged in",
                                slash(&p)
                            ),
                        )));
                    }
                    if let Some(r) = redirect.filter(|_| u.opts.redirect_follow) {
                        return Ok(Some(mk(
                            "redirect",
                            Some(format!("redirect xattr = {r}")),
                            format!(
                                "{name}'s directory {} is redirected to {r}: the layers below are read there",
                                slash(&p)
                            ),
                        )));
                    }
                }
            }
        }
    }
    Ok(None)
}

/// Every layer that holds an entry at `rel` but is not `shown`.
pub fn hidden(
    view: &View,
    rel: &Path,
    shown: &[usize],
    graft: Option<&Cause>,
) -> Result<Vec<Hidden>> {
    let mut out = Vec::new();
    for l in view.layer_indexes() {
        if shown.contains(&l) {
            continue;
        }
        if let Raw::Entry { kind, .. } = probe::raw(&view.union, l, rel).map_err(errno)? {
            let by = match graft {
                Some(c) => Some(c.clone()),
                None => cause(view, l, kind, rel)?,
            };
            out.push(Hidden {
                at: at(view, l, rel),
                kind: kind_name(kind).into(),
                by,
            });
        }
    }
    Ok(out)
}

/// The directory, in any layer, whose redirect the lower entries of `rel` were found through.
pub fn redirect_on_way(view: &View, rel: &Path) -> Option<String> {
    let mut p = PathBuf::new();
    let mut out = None;
    for c in rel.iter() {
        p.push(c);
        for i in view.layer_indexes() {
            if let Ok(Raw::Entry {
                redirect: Some(r), ..
            }) = probe::raw(&view.union, i, &p)
            {
                out = Some(format!(
                    "{} carries a redirect to {r} in {}: below it the lower layers are read at {r}",
                    slash(&p),
                    View::layer_name(i)
                ));
            }
        }
    }
    out
}
