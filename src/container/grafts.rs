//! A container's volumes, binds and tmpfs (`-v`, `--mount`, `--tmpfs`, and the image's
//! VOLUMEs), served by the union's daemon inside the container's root, so they are in place
//! before the process enters it. They are kept in the record as the flags were given, with
//! each anonymous volume given its name at `run`: `start` then finds the same volume, and
//! `rm -v` (or `run --rm`) removes it; named volumes are never removed.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::state::Root;
use crate::volume::spec::{self, Graft, Source};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Volume,
    Mount,
    Tmpfs,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraftSpec {
    pub kind: Kind,
    pub spec: String,
}

pub fn parse(g: &GraftSpec) -> Result<Graft> {
    match g.kind {
        Kind::Volume => spec::volume(&g.spec),
        Kind::Mount => spec::mount(&g.spec),
        Kind::Tmpfs => spec::tmpfs(&g.spec),
    }
}

/// The grafts to serve, outer ones first.
pub fn grafts(specs: &[GraftSpec]) -> Result<Vec<Graft>> {
    spec::order(specs.iter().map(parse).collect::<Result<_>>()?)
}

/// Check the flags, name the anonymous volumes, and add an anonymous volume for each image
/// VOLUME no flag covers (Docker's rule). Returns the specs and the anonymous names.
pub fn prepare(
    volumes: &[String],
    mounts: &[String],
    tmpfs: &[String],
    image_volumes: &[String],
) -> Result<(Vec<GraftSpec>, Vec<String>)> {
    let given = volumes
        .iter()
        .map(|s| (Kind::Volume, s))
        .chain(mounts.iter().map(|s| (Kind::Mount, s)))
        .chain(tmpfs.iter().map(|s| (Kind::Tmpfs, s)));
    let mut out = Vec::new();
    let mut anonymous = Vec::new();
    let mut targets = Vec::new();
    for (kind, s) in given {
        let g = GraftSpec {
            kind,
            spec: s.clone(),
        };
        let parsed = parse(&g)?;
        targets.push(parsed.target.clone());
        out.push(match parsed.source {
            Source::Volume(None) => named(&parsed, &mut anonymous),
            _ => g,
        });
    }
    for v in image_volumes {
        let g = spec::volume(v)?;
        if !targets.contains(&g.target) {
            out.push(named(&g, &mut anonymous));
        }
    }
    // The order and overlaps are checked now, not at the first start.
    spec::order(out.iter().map(parse).collect::<Result<_>>()?)?;
    Ok((out, anonymous))
}

/// An anonymous volume graft as `-v NAME:DST[:OPTS]` with a new name.
fn named(g: &Graft, anonymous: &mut Vec<String>) -> GraftSpec {
    let name = crate::volume::store::random_name();
    let opts: Vec<&str> = [(g.read_only, "ro"), (g.nocopy, "nocopy")]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, o)| *o)
        .collect();
    let mut spec = format!("{name}:{}", g.target.display());
    if !opts.is_empty() {
        spec.push(':');
        spec.push_str(&opts.join(","));
    }
    anonymous.push(name);
    GraftSpec {
        kind: Kind::Volume,
        spec,
    }
}

/// `--volumes-from C[:ro|:rw]`: the volumes and binds of other containers (not their tmpfs,
/// nor the /etc files made for them), with their modes; `ro` makes them read-only, and `rw`
/// leaves a read-only one read-only (Docker's rule: writable only if both say so). Those at
/// a target one of `own` grafts onto are left out: the container's own flags win.
pub fn volumes_from(root: &Root, from: &[String], own: &[GraftSpec]) -> Result<Vec<GraftSpec>> {
    if from.is_empty() {
        return Ok(Vec::new());
    }
    let taken: Vec<_> = own
        .iter()
        .filter_map(|g| parse(g).ok())
        .map(|g| g.target)
        .collect();
    let store = super::records::Store::new(root);
    let lock = store.lock()?;
    let mut out: Vec<GraftSpec> = Vec::new();
    for f in from {
        let (key, mode) = f.split_once(':').unwrap_or((f, "rw"));
        let force_ro = match mode {
            "ro" => true,
            "rw" => false,
            m => anyhow::bail!("invalid mode: {m}"),
        };
        let other = store.find(&lock, key)?;
        let dir = store.container_dir(&other.id);
        for g in &other.grafts {
            let g = parse(g)?;
            let ro = if g.read_only || force_ro {
                ",readonly"
            } else {
                ""
            };
            let spec = match &g.source {
                Source::Bind(p) if p.starts_with(&dir) => continue,
                Source::Bind(p) => {
                    format!(
                        "type=bind,source={},target={}{ro}",
                        p.display(),
                        g.target.display()
                    )
                }
                Source::Volume(Some(n)) => {
                    let nocopy = if g.nocopy { ",volume-nocopy" } else { "" };
                    format!(
                        "type=volume,source={n},target={}{ro}{nocopy}",
                        g.target.display()
                    )
                }
                Source::Volume(None) | Source::Tmpfs { .. } => continue,
            };
            let new = GraftSpec {
                kind: Kind::Mount,
                spec,
            };
            let seen = out
                .iter()
                .filter_map(|o| parse(o).ok())
                .any(|o| o.target == g.target);
            if !seen && !taken.contains(&g.target) {
                out.push(new);
            }
        }
    }
    Ok(out)
}

/// Remove the container's anonymous volumes (once nothing mounts them); one line per failure.
pub fn remove_anonymous(root: &Root, names: &[String]) -> Vec<String> {
    if names.is_empty() {
        return Vec::new();
    }
    let store = match crate::volume::store::Store::open(root) {
        Ok(s) => s,
        Err(e) => return vec![format!("{e:#}")],
    };
    names
        .iter()
        .filter_map(|n| match store.get(n) {
            Ok(None) => None,
            _ => store.remove(n).err().map(|e| format!("{e:#}")),
        })
        .collect()
}

/// Docker's inspect `Mounts`.
pub fn mounts_json(root: &Root, specs: &[GraftSpec]) -> Vec<serde_json::Value> {
    specs
        .iter()
        .filter_map(|g| parse(g).ok())
        .map(|g| {
            let (kind, name, source) = match &g.source {
                Source::Bind(p) => ("bind", String::new(), p.display().to_string()),
                Source::Volume(n) => {
                    let n = n.clone().unwrap_or_default();
                    let data = root.volumes().join(&n).join("_data");
                    ("volume", n, data.display().to_string())
                }
                Source::Tmpfs { .. } => ("tmpfs", String::new(), String::new()),
            };
            serde_json::json!({
                "Type": kind,
                "Name": name,
                "Source": source,
                "Destination": g.target,
                "RW": !g.read_only,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn anonymous_volumes_get_names_and_image_volumes_are_added() {
        let (specs, anon) = prepare(
            &["/data".into(), "named:/keep:ro".into()],
            &["type=volume,target=/cache,readonly,volume-nocopy".into()],
            &["/run".into()],
            &["/data".into(), "/var/lib/x".into()],
        )
        .unwrap();
        assert_eq!(anon.len(), 3, "{specs:?}");
        assert_eq!(specs[0].spec, format!("{}:/data", anon[0]));
        assert_eq!(specs[1].spec, "named:/keep:ro");
        assert_eq!(specs[2].spec, format!("{}:/cache:ro,nocopy", anon[1]));
        assert_eq!(
            specs[3],
            GraftSpec {
                kind: Kind::Tmpfs,
                spec: "/run".into()
            }
        );
        // /data is covered by -v; /var/lib/x is not.
        assert_eq!(specs[4].spec, format!("{}:/var/lib/x", anon[2]));
        assert!(grafts(&specs).is_ok());
        assert!(prepare(&["bad name:/x".into()], &[], &[], &[]).is_err());
    }

    #[test]
    fn a_bind_keeps_its_source() {
        let (specs, anon) = prepare(&["/srv/www:/var/www:ro".into()], &[], &[], &[]).unwrap();
        assert!(anon.is_empty());
        let g = grafts(&specs).unwrap();
        assert_eq!(
            g[0].source,
            Source::Bind(Path::new("/srv/www").to_path_buf())
        );
        assert!(g[0].read_only);
    }
}
