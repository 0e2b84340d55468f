//! A container's layers as `diff` and `commit` read them: its upper directory over its lower
//! layers, the mountpoints of its volumes, binds and tmpfs, the image it runs from and its
//! command. The record is read leniently: a container run from a rootfs directory has one
//! lower layer (`rootfs`); one run from an image names its layers (`lowers`, top-most first)
//! and the image (`ImageID`), and its grafts (`grafts`) as they were given.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::Value;

use super::records::{read_json, Store};
use crate::image::changes::Target;
use crate::state::Root;

pub fn target(root: &Root, name: &str) -> Result<Target> {
    let store = Store::new(root);
    let lock = store.lock()?;
    let c = store.find(&lock, name)?;
    let dir = store.container_dir(&c.id);
    let v: Value = read_json(&dir.join("config.json"))?;
    let paths = |k: &str| -> Vec<PathBuf> {
        v.get(k)
            .and_then(|l| l.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(PathBuf::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut lowers = paths("lowers");
    if lowers.is_empty() {
        if let Some(r) = v.get("rootfs").and_then(|r| r.as_str()) {
            lowers.push(PathBuf::from(r));
        }
    }
    let mut mountpoints = Vec::new();
    for g in v
        .get("grafts")
        .and_then(|g| g.as_array())
        .into_iter()
        .flatten()
    {
        let kind = g.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        let spec = g.get("spec").and_then(|k| k.as_str()).unwrap_or("");
        use crate::volume::spec;
        let parsed = match kind.to_ascii_lowercase().as_str() {
            "volume" => spec::volume(spec),
            "mount" => spec::mount(spec),
            "tmpfs" => spec::tmpfs(spec),
            "bind" => spec::bind(spec),
            _ => continue,
        }
        .with_context(|| format!("container {}: graft {spec:?}", c.id))?;
        mountpoints.push(parsed.target);
    }
    let args: Vec<String> = c.spec.args.clone();
    Ok(Target {
        upper: dir.join("upper"),
        lowers,
        mountpoints,
        image_id: v
            .get("ImageID")
            .and_then(|i| i.as_str())
            .map(str::to_string),
        created_by: args.join(" "),
    })
}
