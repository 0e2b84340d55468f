//! `strata commit [-m MSG] [-c INSTRUCTION] CONTAINER [NAME[:TAG]]`: the container's upper
//! becomes one new layer on top of its image's layers. The layer tar (`commit_tar`) is
//! unpacked into the store through the same path as an import (a scratch directory, its
//! diff_id computed while it is read, renamed into place under the lock), and the new config is
//! the image's with the layer's diff_id appended, a history entry (the container's command,
//! the message) and the `-c` changes.
//!
//! A container run from a root filesystem directory has no image: each of its lower
//! directories becomes a layer first (as `image import DIR` makes one), unless they are an
//! image's layers in the store.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};

use super::changes::{changes, Target};
use super::digest::Compression;
use super::import::{commit as store_commit, now, unpack_layer, NewLayer};
use super::reference::Ref;
use super::store::Store;
use crate::state::Root;

pub struct Request<'a> {
    pub target: &'a Target,
    pub message: Option<&'a str>,
    pub author: Option<&'a str>,
    pub changes: &'a [String],
    pub name: Option<&'a str>,
}

/// The image a commit builds on: its layers' diff_ids (bottom first) and config.
struct Base {
    diff_ids: Vec<String>,
    config: Value,
    new: Vec<NewLayer>,
}

pub fn commit(root: &Root, req: Request) -> Result<String> {
    let tags = match req.name {
        Some(n) => vec![Ref::parse(n)?],
        None => vec![],
    };
    let store = Store::new(root);
    let t = req.target;
    let created = crate::volume::store::rfc3339(now() as i64);
    let mut base = base(&store, t, &created)?;
    // The container's changes as a layer tar, streamed into a scratch layer of the store.
    let list = changes(t)?;
    let (r, w) = std::io::pipe()?;
    let layer = std::thread::scope(|s| {
        let writer = s.spawn(move || super::commit_tar::write(&list, &t.upper, &t.lowers, w));
        let unpacked = unpack_layer(&store, r, Some(Compression::None), None, None);
        let written = writer
            .join()
            .map_err(|_| anyhow!("writing the layer tar panicked"))?;
        written?;
        unpacked
    })
    .context("the container's layer")?;
    let diff_id = layer.diff_id.clone();
    base.diff_ids.push(diff_id.clone());
    base.new.push(layer);
    let c = &mut base.config;
    c["created"] = json!(created);
    c["rootfs"] = json!({"type": "layers", "diff_ids": base.diff_ids});
    if let Some(a) = req.author {
        c["author"] = json!(a);
    }
    let mut h = json!({"created": created, "created_by": t.created_by});
    if let Some(a) = req.author {
        h["author"] = json!(a);
    }
    if let Some(m) = req.message {
        h["comment"] = json!(m);
    }
    match c.get_mut("history").and_then(|h| h.as_array_mut()) {
        Some(list) => list.push(h),
        None => c["history"] = json!([h]),
    }
    if !c.get("config").is_some_and(|x| x.is_object()) {
        c["config"] = json!({});
    }
    let exec = c["config"].as_object_mut().expect("an object");
    for i in req.changes {
        super::instructions::apply(exec, i)?;
    }
    let raw = serde_json::to_vec(&base.config)?;
    super::config::parse(&raw)?;
    store_commit(
        &store,
        &base.diff_ids,
        base.new,
        &raw,
        None,
        "commit",
        &tags,
    )
}

fn base(store: &Store, t: &Target, created: &str) -> Result<Base> {
    let (images, lock) = {
        let l = store.lock()?;
        (store.images()?, l)
    };
    drop(lock);
    let found =
        match &t.image_id {
            Some(id) => Some(images.iter().find(|i| &i.rec.id == id).with_context(|| {
                format!("the container's image {id} is no longer in the store")
            })?),
            // A container run straight from an image's layer directories.
            None => images.iter().find(|i| {
                let dirs: Vec<PathBuf> = i
                    .rec
                    .layers
                    .iter()
                    .rev()
                    .filter_map(|l| store.layer_path(&l.diff_id).ok())
                    .collect();
                !dirs.is_empty() && dirs == t.lowers
            }),
        };
    if let Some(i) = found {
        return Ok(Base {
            diff_ids: i.rec.layers.iter().map(|l| l.diff_id.clone()).collect(),
            config: serde_json::from_slice(&i.config).context("image config")?,
            new: vec![],
        });
    }
    // Root filesystem directories: each one a layer, bottom first.
    let mut new = Vec::new();
    let mut history = Vec::new();
    for dir in t.lowers.iter().rev() {
        new.push(pack_dir(store, dir)?);
        history.push(json!({"created": created, "created_by": format!("strata image import {}", dir.display())}));
    }
    let diff_ids: Vec<String> = new.iter().map(|n| n.diff_id.clone()).collect();
    Ok(Base {
        config: json!({
            "architecture": super::config::go_arch(),
            "os": "linux",
            "created": created,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }),
        diff_ids,
        new,
    })
}

fn pack_dir(store: &Store, dir: &Path) -> Result<NewLayer> {
    let (r, w) = std::io::pipe()?;
    std::thread::scope(|s| {
        let packer = s.spawn(move || super::pack::pack(dir, w));
        let unpacked = unpack_layer(store, r, Some(Compression::None), None, None);
        packer
            .join()
            .map_err(|_| anyhow!("packing {} panicked", dir.display()))??;
        unpacked
    })
    .with_context(|| format!("layer of {}", dir.display()))
}
