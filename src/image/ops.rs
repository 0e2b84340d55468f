//! ls, inspect, history, tag, rm and prune: the store's records as the data Docker's verbs show,
//! and the changes they make. Names are NAME[:TAG] (`:latest` by default), an image id
//! (`sha256:<hex>` or `<hex>`) or a unique prefix of one, as Docker takes them.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde_json::{json, Value};

pub use super::filter::Filter;
use super::reference::{is_hex, Ref};
use super::store::{container_using, Image, Store};
use crate::state::Root;

/// 12 hex digits, as Docker shows ids.
pub fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

fn no_such(name: &str) -> anyhow::Error {
    anyhow::anyhow!("No such image: {name}")
}

/// The image `name` means, and the tag it was named by (if it was a tag).
pub fn resolve<'a>(images: &'a [Image], name: &str) -> Result<(&'a Image, Option<String>)> {
    if let Ok(r) = Ref::parse(name) {
        let t = r.to_string();
        if let Some(i) = images.iter().find(|i| i.tags.contains(&t)) {
            return Ok((i, Some(t)));
        }
    }
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    if !is_hex(hex) {
        return Err(no_such(name));
    }
    let found: Vec<&Image> = images
        .iter()
        .filter(|i| i.rec.id.trim_start_matches("sha256:").starts_with(hex))
        .collect();
    match found.as_slice() {
        [one] => Ok((one, None)),
        [] => Err(no_such(name)),
        _ => bail!(
            "image id prefix {name} is ambiguous: {} images match",
            found.len()
        ),
    }
}

fn config_value(i: &Image) -> Value {
    serde_json::from_slice(&i.config).unwrap_or(Value::Null)
}

/// The image's creation time, as its config has it (RFC 3339), or "".
pub fn created(i: &Image) -> String {
    config_value(i)
        .get("created")
        .and_then(|c| c.as_str())
        .unwrap_or("")
        .to_string()
}

/// One `image ls` row.
pub struct Row {
    pub repo: String,
    pub tag: String,
    pub id: String,
    pub created: Option<i64>,
    pub size: u64,
}

pub fn ls(root: &Root, filters: &[Filter]) -> Result<Vec<Row>> {
    let rows = ls_all(root)?;
    Ok(rows
        .into_iter()
        .filter(|r| filters.iter().all(|f| f.keeps(r)))
        .collect())
}

fn ls_all(root: &Root) -> Result<Vec<Row>> {
    let s = Store::new(root);
    let _l = s.lock()?;
    let mut images = s.images()?;
    images.sort_by_key(|i| std::cmp::Reverse(parse_rfc3339(&created(i))));
    let mut rows = Vec::new();
    for i in &images {
        let c = parse_rfc3339(&created(i));
        let mut tags = i.tags.clone();
        tags.sort();
        let pairs: Vec<(String, String)> = if tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            tags.iter()
                .map(|t| {
                    let (r, g) = t.rsplit_once(':').unwrap_or((t, ""));
                    (r.to_string(), g.to_string())
                })
                .collect()
        };
        for (repo, tag) in pairs {
            rows.push(Row {
                repo,
                tag,
                id: i.rec.id.clone(),
                created: c,
                size: i.size(),
            });
        }
    }
    Ok(rows)
}

/// Docker's `image inspect` objects, and the names that matched nothing.
pub fn inspect(root: &Root, names: &[String]) -> Result<(Vec<Value>, Vec<String>)> {
    let s = Store::new(root);
    let _l = s.lock()?;
    let images = s.images()?;
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for n in names {
        let Ok((i, _)) = resolve(&images, n) else {
            missing.push(n.clone());
            continue;
        };
        let c = config_value(i);
        let diff_ids: Vec<&str> = i.rec.layers.iter().map(|l| l.diff_id.as_str()).collect();
        let lower: Vec<String> = diff_ids
            .iter()
            .rev()
            .filter_map(|d| s.layer_path(d).ok())
            .map(|p| p.display().to_string())
            .collect();
        let mut tags = i.tags.clone();
        tags.sort();
        out.push(json!({
            "Id": i.rec.id,
            "RepoTags": tags,
            "RepoDigests": [],
            "Parent": "",
            "Comment": c.pointer("/history").and_then(|h| h.as_array()).and_then(|h| h.last())
                .and_then(|h| h.get("comment")).and_then(|x| x.as_str()).unwrap_or(""),
            "Created": created(i),
            "Author": c.get("author").and_then(|a| a.as_str()).unwrap_or(""),
            "Config": super::config::exec_section(&i.config),
            "Architecture": c.get("architecture").cloned().unwrap_or(Value::Null),
            "Os": c.get("os").cloned().unwrap_or(Value::Null),
            "Size": i.size(),
            "GraphDriver": {"Name": "strata", "Data": {"LowerDir": lower.join(":")}},
            "RootFS": {"Type": "layers", "Layers": diff_ids},
            "Metadata": {"LastTagTime": ""},
        }));
    }
    Ok((out, missing))
}

/// One `image history` row, newest first.
pub struct HistoryRow {
    pub image: String,
    pub created: Option<i64>,
    pub created_by: String,
    pub size: u64,
    pub comment: String,
}

pub fn history(root: &Root, name: &str) -> Result<Vec<HistoryRow>> {
    let s = Store::new(root);
    let _l = s.lock()?;
    let images = s.images()?;
    let (i, _) = resolve(&images, name)?;
    let c = config_value(i);
    let hist = c
        .get("history")
        .and_then(|h| h.as_array())
        .cloned()
        .unwrap_or_default();
    let mut rows = Vec::new();
    let mut layers = i.rec.layers.iter();
    let str_of = |h: &Value, k: &str| h.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    if hist.is_empty() {
        for l in layers.by_ref() {
            rows.push(HistoryRow {
                image: String::new(),
                created: parse_rfc3339(&created(i)),
                created_by: String::new(),
                size: l.size,
                comment: String::new(),
            });
        }
    }
    for h in &hist {
        let empty = h
            .get("empty_layer")
            .and_then(|e| e.as_bool())
            .unwrap_or(false);
        let size = if empty {
            0
        } else {
            layers.next().map(|l| l.size).unwrap_or(0)
        };
        rows.push(HistoryRow {
            image: String::new(),
            created: parse_rfc3339(&str_of(h, "created")),
            created_by: str_of(h, "created_by"),
            size,
            comment: str_of(h, "comment"),
        });
    }
    rows.reverse();
    for (k, r) in rows.iter_mut().enumerate() {
        r.image = if k == 0 {
            short(&i.rec.id)
        } else {
            "<missing>".into()
        };
    }
    Ok(rows)
}

/// What `run` needs of an image: its id, its layer directories (top-most first, as
/// `lowerdir=` takes them) and its execution defaults.
pub struct ForRun {
    pub id: String,
    pub layers: Vec<std::path::PathBuf>,
    #[allow(dead_code)] // for the containers' `run`
    pub config: super::config::RunConfig,
}

pub fn for_run(root: &Root, name: &str) -> Result<ForRun> {
    let s = Store::new(root);
    let _l = s.lock()?;
    let images = s.images()?;
    let (i, _) = resolve(&images, name)?;
    let layers = i
        .rec
        .layers
        .iter()
        .rev()
        .map(|l| s.layer_path(&l.diff_id))
        .collect::<Result<_>>()?;
    Ok(ForRun {
        id: i.rec.id.clone(),
        layers,
        config: super::config::run_config(&super::config::parse(&i.config)?),
    })
}

pub fn tag(root: &Root, src: &str, dst: &str) -> Result<()> {
    let dst = Ref::parse(dst)?;
    let s = Store::new(root);
    let _l = s.lock()?;
    let images = s.images()?;
    let (i, _) = resolve(&images, src)?;
    let mut tags = s.tags()?;
    tags.insert(dst.to_string(), i.rec.id.clone());
    s.write_tags(&tags)
}

fn layer_dirs(s: &Store, i: &Image) -> Vec<std::path::PathBuf> {
    i.rec
        .layers
        .iter()
        .filter_map(|l| s.layer_path(&l.diff_id).ok())
        .collect()
}

/// `image rm`: the lines Docker prints (`Untagged: ..`, `Deleted: ..`) for each name done, and
/// an error line for each refused.
pub fn rm(root: &Root, names: &[String], force: bool) -> (Vec<String>, Vec<String>) {
    let s = Store::new(root);
    let mut out = Vec::new();
    let mut errs = Vec::new();
    let lock = match s.lock() {
        Ok(l) => l,
        Err(e) => return (out, vec![format!("{e:#}")]),
    };
    for n in names {
        match rm_one(&s, root, n, force) {
            Ok(mut lines) => out.append(&mut lines),
            Err(e) => errs.push(format!("{e:#}")),
        }
    }
    drop(lock);
    (out, errs)
}

fn rm_one(s: &Store, root: &Root, name: &str, force: bool) -> Result<Vec<String>> {
    let images = s.images()?;
    let (i, by_tag) = resolve(&images, name)?;
    let id = i.rec.id.clone();
    if let Some(at) = super::mount::mounted_at(&id) {
        bail!(
            "conflict: unable to delete {} - image is mounted at {} (strata image umount it first)",
            short(&id),
            at.display()
        );
    }
    let user = container_using(&root.path, &id, &layer_dirs(s, i)).map(|c| short(&c));
    let mut tags: BTreeMap<String, String> = s.tags()?;
    let mut out = Vec::new();
    let untag: Vec<String> = match &by_tag {
        Some(t) if i.tags.len() > 1 => {
            tags.remove(t);
            s.write_tags(&tags)?;
            return Ok(vec![format!("Untagged: {t}")]);
        }
        Some(t) => vec![t.clone()],
        None if i.tags.len() > 1 && !force => bail!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            short(&id)
        ),
        None => i.tags.clone(),
    };
    if let Some(c) = &user {
        if !force {
            match &by_tag {
                Some(t) => bail!(
                    "conflict: unable to remove repository reference \"{t}\" (must force) - container {c} is using its referenced image {}",
                    short(&id)
                ),
                None => bail!(
                    "conflict: unable to delete {} (must be forced) - image is being used by container {c}",
                    short(&id)
                ),
            }
        }
    }
    for t in &untag {
        tags.remove(t);
        out.push(format!("Untagged: {t}"));
    }
    s.write_tags(&tags)?;
    if user.is_none() {
        s.remove_image(&id)?;
        out.push(format!("Deleted: {id}"));
        for l in s.remove_orphan_layers(&[])? {
            out.push(format!("Deleted: {l}"));
        }
    }
    Ok(out)
}

/// `image prune`: remove every image without a tag that no container uses. Returns the ids and
/// layers deleted and the bytes of the layers removed.
pub fn prune(root: &Root) -> Result<(Vec<String>, u64)> {
    let s = Store::new(root);
    let _l = s.lock()?;
    let images = s.images()?;
    let sizes: BTreeMap<String, u64> = images
        .iter()
        .flat_map(|i| i.rec.layers.iter().map(|l| (l.diff_id.clone(), l.size)))
        .collect();
    let mut out = Vec::new();
    for i in &images {
        let used = container_using(&root.path, &i.rec.id, &layer_dirs(&s, i)).is_some()
            || super::mount::mounted_at(&i.rec.id).is_some();
        if i.tags.is_empty() && !used {
            s.remove_image(&i.rec.id)?;
            out.push(i.rec.id.clone());
        }
    }
    let mut bytes = 0;
    if !out.is_empty() {
        for l in s.remove_orphan_layers(&[])? {
            bytes += sizes.get(&l).copied().unwrap_or(0);
            out.push(l);
        }
    }
    Ok((out, bytes))
}

/// Seconds since the epoch of an RFC 3339 time (`2026-12-03T11:39:24.5Z`, `...+01:00`).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    crate::time::parse_rfc3339(s).map(|(secs, _)| secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-11-23T17:23:56Z"), Some(1795454636));
        assert_eq!(
            parse_rfc3339("2026-11-23T17:23:56.123456789Z"),
            Some(1795454636)
        );
        assert_eq!(parse_rfc3339("2026-11-23T18:23:56+01:00"), Some(1795454636));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    fn image(hex: &str, tags: &[&str]) -> Image {
        Image {
            rec: super::super::store::Record {
                id: format!("sha256:{hex}"),
                manifest: None,
                layers: vec![],
                source: String::new(),
                imported: 0,
            },
            config: b"{}".to_vec(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn names_resolve_as_dockers_do() {
        let a = "aaaa".repeat(16);
        let b = format!("aaab{}", "b".repeat(60));
        let images = [image(&a, &["busybox:latest"]), image(&b, &["aaab:latest"])];
        let id = |n: &str| resolve(&images, n).map(|(i, t)| (i.rec.id.clone(), t));
        assert_eq!(
            id("busybox").unwrap(),
            (format!("sha256:{a}"), Some("busybox:latest".into()))
        );
        assert_eq!(id("aaaa").unwrap().0, format!("sha256:{a}"));
        assert_eq!(id(&format!("sha256:{b}")).unwrap().0, format!("sha256:{b}"));
        // A tag wins over an id prefix that reads the same.
        assert_eq!(id("aaab").unwrap().1, Some("aaab:latest".into()));
        let e = id("aaa").unwrap_err().to_string();
        assert!(e.contains("ambiguous"), "{e}");
        assert_eq!(
            id("busybox:1").unwrap_err().to_string(),
            "No such image: busybox:1"
        );
        assert_eq!(
            id("c0ffee").unwrap_err().to_string(),
            "No such image: c0ffee"
        );
    }

    #[test]
    fn ids_are_shown_short() {
        assert_eq!(
            short(&format!("sha256:{}", "ab".repeat(32))),
            "abababababab"
        );
    }
}
