//! The layer store and image records under the state root:
//!
//! ```text
//! layers/sha256/<diff_id>/        one unpacked layer, shared by every image that names it
//! layers/split/<diff_id hex>      the record of the layer's tar besides its files' data (split)
//! layers/tmp/<pid>-<n>/           layers being unpacked; renamed into place once verified
//! images/sha256/<id>/config.json  the image config blob (its sha256 is the image id)
//! images/sha256/<id>/record.json  layer list with sizes, manifest digest, source, import time
//! images/repositories.json        tags: "NAME:TAG" -> image id
//! ```
//!
//! A layer is unpacked in `layers/tmp`, synced, and renamed into place only when complete and
//! verified; an image's files are written in a temporary directory and renamed likewise, and
//! the tags file is replaced by rename. Changes happen under the state root's lock, so a crash
//! or a kill leaves the store as it was, give or take a temporary directory that the next import
//! removes.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::at::{open_dir_path, remove_all};
use super::digest::sha256_hex;
use crate::state::{Locked, Root};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerRec {
    pub diff_id: String,
    pub size: u64,
}

/// What strata keeps about an image beside its config.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    #[serde(default)]
    pub manifest: Option<String>,
    pub layers: Vec<LayerRec>,
    pub source: String,
    /// Seconds since the epoch.
    pub imported: u64,
}

/// An image: its record, raw config and tags.
pub struct Image {
    pub rec: Record,
    pub config: Vec<u8>,
    pub tags: Vec<String>,
}

impl Image {
    pub fn size(&self) -> u64 {
        self.rec.layers.iter().map(|l| l.size).sum()
    }
}

pub struct Store {
    pub path: PathBuf,
    root: Root,
}

/// A layer being unpacked: removed when dropped, unless committed into the store.
pub struct TmpLayer {
    pub path: PathBuf,
}

impl TmpLayer {
    /// The layer tar's record (`split`), beside the directory until both are put in place.
    pub fn split_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".split");
        PathBuf::from(p)
    }
}

impl Drop for TmpLayer {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.split_path());
        if let (Some(parent), Some(name)) = (self.path.parent(), self.path.file_name()) {
            if let Ok(fd) = open_dir_path(parent) {
                let _ = remove_all(fd.as_raw_fd(), name);
            }
        }
    }
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl Store {
    pub fn new(root: &Root) -> Store {
        Store {
            path: root.path.clone(),
            root: Root {
                path: root.path.clone(),
            },
        }
    }

    /// The state root's lock (and database), held while records change.
    pub fn lock(&self) -> Result<Locked> {
        self.root.open()
    }

    pub fn layers_dir(&self) -> PathBuf {
        self.path.join("layers/sha256")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.path.join("layers/tmp")
    }

    fn images_dir(&self) -> PathBuf {
        self.path.join("images/sha256")
    }

    fn tags_file(&self) -> PathBuf {
        self.path.join("images/repositories.json")
    }

    /// The record of the tar a layer was unpacked from (`split`), if it was kept.
    pub fn split_path(&self, diff_id: &str) -> Result<PathBuf> {
        Ok(self.path.join("layers/split").join(sha256_hex(diff_id)?))
    }

    pub fn layer_path(&self, diff_id: &str) -> Result<PathBuf> {
        Ok(self.layers_dir().join(sha256_hex(diff_id)?))
    }

    pub fn has_layer(&self, diff_id: &str) -> bool {
        self.layer_path(diff_id)
            .map(|p| p.is_dir())
            .unwrap_or(false)
    }

    /// A new, empty directory to unpack a layer in, on the store's filesystem. Leftovers of
    /// imports that were killed are removed first.
    pub fn tmp_layer(&self) -> Result<TmpLayer> {
        let tmp = self.tmp_dir();
        fs::create_dir_all(&tmp).with_context(|| format!("{}", tmp.display()))?;
        fs::create_dir_all(self.layers_dir())?;
        self.remove_stale_tmp()?;
        let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = tmp.join(format!("{}-{n}", std::process::id()));
        fs::create_dir(&path).with_context(|| format!("{}", path.display()))?;
        Ok(TmpLayer { path })
    }

    fn remove_stale_tmp(&self) -> Result<()> {
        let tmp = self.tmp_dir();
        let fd = open_dir_path(&tmp)?;
        for e in fs::read_dir(&tmp)? {
            let name = e?.file_name();
            let pid = name
                .to_string_lossy()
                .split('-')
                .next()
                .unwrap_or("")
                .to_string();
            let live =
                pid == std::process::id().to_string() || Path::new("/proc").join(&pid).exists();
            if pid.is_empty() || !live {
                remove_all(fd.as_raw_fd(), &name)?;
            }
        }
        Ok(())
    }

    /// Put verified layers and an image in place, and tag it. The layers are the image's, in
    /// order, each either unpacked now (`Some`) or already in the store.
    pub fn commit(
        &self,
        _lock: &Locked,
        layers: Vec<(String, Option<TmpLayer>)>,
        rec: &Record,
        config: &[u8],
        tags: &[String],
    ) -> Result<()> {
        // Layers a killed import renamed into place without its record; not this import's.
        let ours: Vec<String> = layers.iter().map(|(d, _)| d.clone()).collect();
        self.remove_orphan_layers(&ours)?;
        // The image's files first, so what can fail for want of space fails before any layer
        // is in place; then the layers, then the image, each by rename.
        let hex = sha256_hex(&rec.id)?;
        let dst = self.images_dir().join(hex);
        fs::create_dir_all(self.images_dir())?;
        // Under the lock no other commit is under way: any images/tmp-* is a killed one's.
        for e in fs::read_dir(self.path.join("images"))? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with("tmp-") {
                fs::remove_dir_all(e.path())?;
            }
        }
        let tmp = self.path.join(format!("images/tmp-{}", std::process::id()));
        if !dst.exists() {
            fs::create_dir_all(&tmp)?;
            write_synced(&tmp.join("config.json"), config)?;
            write_synced(&tmp.join("record.json"), &serde_json::to_vec_pretty(rec)?)?;
            fsync_dir(&tmp)?;
        }
        for (diff_id, t) in &layers {
            let ldst = self.layer_path(diff_id)?;
            match t {
                Some(t) if !ldst.exists() => {
                    // The record first: a layer in place without one is only saved by `pack`.
                    if t.split_path().exists() {
                        fs::create_dir_all(self.path.join("layers/split"))?;
                        fs::rename(t.split_path(), self.split_path(diff_id)?)?;
                    }
                    fs::rename(&t.path, &ldst).with_context(|| format!("layer {diff_id}"))?
                }
                Some(_) => {}
                None if !ldst.is_dir() => {
                    bail!("layer {diff_id} was removed during the import: import again")
                }
                None => {}
            }
        }
        fsync_dir(&self.layers_dir())?;
        if !dst.exists() {
            fs::rename(&tmp, &dst).with_context(|| format!("image {}", rec.id))?;
            fsync_dir(&self.images_dir())?;
        }
        let mut all = self.tags()?;
        for t in tags {
            all.insert(t.clone(), rec.id.clone());
        }
        self.write_tags(&all)
    }

    /// Every tag and the image it names.
    pub fn tags(&self) -> Result<BTreeMap<String, String>> {
        match fs::read(self.tags_file()) {
            Ok(b) => serde_json::from_slice(&b).context("images/repositories.json"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(e).context("images/repositories.json"),
        }
    }

    pub fn write_tags(&self, tags: &BTreeMap<String, String>) -> Result<()> {
        let dir = self.path.join("images");
        fs::create_dir_all(self.images_dir())?;
        let tmp = dir.join(format!(".repositories.json.{}", std::process::id()));
        write_synced(&tmp, &serde_json::to_vec_pretty(tags)?)?;
        fs::rename(&tmp, self.tags_file())?;
        fsync_dir(&dir)
    }

    /// Every image, with its tags.
    pub fn images(&self) -> Result<Vec<Image>> {
        let tags = self.tags()?;
        let mut out = Vec::new();
        let dir = self.images_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).context("images"),
        };
        for e in rd {
            let p = e?.path();
            let what = || format!("image record {}", p.display());
            let rec: Record =
                serde_json::from_slice(&fs::read(p.join("record.json")).with_context(what)?)
                    .with_context(what)?;
            let config = fs::read(p.join("config.json")).with_context(what)?;
            let t = tags
                .iter()
                .filter(|(_, id)| **id == rec.id)
                .map(|(t, _)| t.clone())
                .collect();
            out.push(Image {
                rec,
                config,
                tags: t,
            });
        }
        Ok(out)
    }

    /// Remove an image's record and its tags (its layers go with `remove_orphan_layers`).
    pub fn remove_image(&self, id: &str) -> Result<()> {
        let mut tags = self.tags()?;
        let before = tags.len();
        tags.retain(|_, v| v != id);
        if tags.len() != before {
            self.write_tags(&tags)?;
        }
        let dir = self.images_dir();
        let fd = open_dir_path(&dir)?;
        remove_all(fd.as_raw_fd(), OsStr::new(sha256_hex(id)?))?;
        fsync_dir(&dir)
    }

    /// Remove every layer no image names (except those in `keep`), each first renamed out of
    /// `layers/sha256` so that a crash never leaves a half-removed layer that looks whole.
    /// Returns the diff_ids removed.
    pub fn remove_orphan_layers(&self, keep: &[String]) -> Result<Vec<String>> {
        let used: BTreeSet<String> = self
            .images()?
            .iter()
            .flat_map(|i| i.rec.layers.iter().map(|l| l.diff_id.clone()))
            .chain(keep.iter().cloned())
            .collect();
        let dir = self.layers_dir();
        let mut gone = Vec::new();
        let Ok(rd) = fs::read_dir(&dir) else {
            return Ok(gone);
        };
        fs::create_dir_all(self.tmp_dir())?;
        let tmp_fd = open_dir_path(&self.tmp_dir())?;
        for e in rd {
            let name = e?.file_name();
            let diff_id = format!("sha256:{}", name.to_string_lossy());
            if used.contains(&diff_id) {
                continue;
            }
            let doomed = format!(
                "{}-rm-{}",
                std::process::id(),
                TMP_SEQ.fetch_add(1, Ordering::Relaxed)
            );
            fs::rename(dir.join(&name), self.tmp_dir().join(&doomed))?;
            remove_all(tmp_fd.as_raw_fd(), OsStr::new(&doomed))?;
            let _ = fs::remove_file(self.path.join("layers/split").join(&name));
            gone.push(diff_id);
        }
        if !gone.is_empty() {
            fsync_dir(&dir)?;
        }
        Ok(gone)
    }
}

/// The container using image `id`, if one does: the id of the first container record
/// directory `containers/<id>/` whose `config.json` names the image (its `Image` or `ImageID`
/// field, as `sha256:<hex>`), or whose `rootfs` is one of the image's layer directories
/// (`layers`: a container run straight from a layer). An image a container uses is not removed.
pub fn container_using(state_root: &Path, id: &str, layers: &[PathBuf]) -> Option<String> {
    let rd = fs::read_dir(state_root.join("containers")).ok()?;
    let mut names: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    names.sort();
    names.into_iter().find_map(|n| {
        let p = state_root.join("containers").join(&n).join("config.json");
        let v: serde_json::Value = serde_json::from_slice(&fs::read(p).ok()?).ok()?;
        let names_it = ["Image", "ImageID", "image"]
            .iter()
            .any(|k| v.get(k).and_then(|x| x.as_str()) == Some(id));
        // A container run from a layer's directory by path, not by the image's name: its
        // lower layers (`lowers`; `rootfs` in older records) are inside the store's.
        let inside = |r: &str| layers.iter().any(|l| Path::new(r).starts_with(l));
        let on_layer = v.get("rootfs").and_then(|r| r.as_str()).is_some_and(inside)
            || v.get("lowers")
                .and_then(|r| r.as_array())
                .is_some_and(|a| a.iter().filter_map(|x| x.as_str()).any(inside));
        (names_it || on_layer).then(|| n.to_string_lossy().into_owned())
    })
}

fn write_synced(p: &Path, data: &[u8]) -> Result<()> {
    let mut f = fs::File::create(p).with_context(|| format!("{}", p.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

pub fn fsync_dir(p: &Path) -> Result<()> {
    fs::File::open(p)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("sync {}", p.display()))
}

/// Make everything written below `dir` durable: one syncfs of its filesystem, cheaper than a
/// sync of each of a layer's files.
pub fn sync_tree(dir: &Path) -> Result<()> {
    let fd = open_dir_path(dir)?;
    if unsafe { libc::syncfs(fd.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("sync {}", dir.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_record_naming_the_image_is_found() {
        let d = tempfile::tempdir().unwrap();
        let id = format!("sha256:{}", "b".repeat(64));
        assert_eq!(container_using(d.path(), &id, &[]), None);
        let c = d.path().join("containers/c1");
        fs::create_dir_all(&c).unwrap();
        fs::write(c.join("config.json"), format!("{{\"Image\":\"{id}\"}}")).unwrap();
        fs::create_dir_all(d.path().join("containers/c0")).unwrap();
        assert_eq!(container_using(d.path(), &id, &[]).as_deref(), Some("c1"));
        assert_eq!(container_using(d.path(), "sha256:other", &[]), None);
        // A container run straight from one of the image's layer directories.
        let c2 = d.path().join("containers/c2");
        fs::create_dir_all(&c2).unwrap();
        fs::write(
            c2.join("config.json"),
            r#"{"rootfs": "/s/layers/sha256/ab"}"#,
        )
        .unwrap();
        let layers = [PathBuf::from("/s/layers/sha256/ab")];
        assert_eq!(
            container_using(d.path(), "sha256:other", &layers).as_deref(),
            Some("c2")
        );
    }
}
