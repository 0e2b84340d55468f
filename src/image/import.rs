//! `image import SOURCE [NAME[:TAG]]`: which kind of SOURCE it is, unpacking and verifying each
//! layer, and committing the image to the store.

use std::io::Read;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::digest::{decompressed, Compression, Hashing};
use super::reference::Ref;
use super::store::{sync_tree, LayerRec, Record, Store, TmpLayer};
use crate::state::Root;

/// A progress bar of bytes read and layers done, drawn only on a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
    layers: u64,
    done: u64,
}

impl Progress {
    pub fn new(show: bool) -> Progress {
        Progress {
            bar: show.then(ProgressBar::hidden),
            layers: 0,
            done: 0,
        }
    }

    /// Start counting `bytes` (if known) over `layers` layers.
    pub fn start(&mut self, bytes: Option<u64>, layers: u64) {
        self.layers = layers;
        if self.bar.is_none() {
            return;
        }
        let bar = match bytes {
            Some(b) => ProgressBar::new(b).with_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner(),
        };
        self.bar = Some(bar);
        self.message();
    }

    fn message(&self) {
        if let Some(b) = &self.bar {
            b.set_message(format!(
                "layer {}/{}",
                (self.done + 1).min(self.layers),
                self.layers
            ));
        }
    }

    pub fn layer_done(&mut self) {
        self.done += 1;
        self.message();
    }

    pub fn wrap<'a, R: Read + 'a>(&self, r: R) -> Box<dyn Read + 'a> {
        match &self.bar {
            Some(b) => Box::new(b.wrap_read(r)),
            None => Box::new(r),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// One layer, unpacked and verified: its diff_id (sha256 of the uncompressed tar), the temporary
/// directory holding it and its size.
pub struct NewLayer {
    pub diff_id: String,
    pub tmp: TmpLayer,
    pub size: u64,
}

/// Unpack one layer blob into a temporary directory of the store, checking the blob's digest
/// (`blob_digest`) and its diff_id (`want_diff`) where they are known. `compression`: what the
/// media type says, or None to tell from the first bytes.
pub fn unpack_layer(
    store: &Store,
    blob: impl Read,
    compression: Option<Compression>,
    blob_digest: Option<&str>,
    want_diff: Option<&str>,
) -> Result<NewLayer> {
    let tmp = store.tmp_layer()?;
    let split = super::split::Split::create(&tmp.split_path())?;
    let mut outer = Hashing::new(blob);
    let done = {
        let inner = match compression {
            Some(c) => c.reader(&mut outer),
            None => decompressed(&mut outer),
        };
        inner.and_then(|inner| {
            let mut h = Hashing::new(split.reader(inner));
            let u = super::tar::unpack_split(&mut h, &tmp.path, Some(split.clone()))?;
            let (d, _) = h.finish().context("reading the layer")?;
            split.finish().context("layer record")?;
            Ok((d, u))
        })
    };
    // A blob that is not what its digest says explains any error in reading it, so the digest
    // is checked first, over the whole blob.
    let blob_got = outer.finish().map(|(d, _)| d);
    if let (Some(want), Ok(got)) = (blob_digest, &blob_got) {
        if got != want {
            bail!("digest mismatch: the blob's content has digest {got}");
        }
    }
    let (diff_id, unpacked) = done?;
    blob_got.context("reading the layer")?;
    if let Some(want) = want_diff {
        if diff_id != want {
            bail!("diff_id mismatch: the config says {want}, the layer's uncompressed tar has {diff_id}");
        }
    }
    if unpacked.refused_xattrs > 0 {
        eprintln!(
            "strata: warning: layer {diff_id}: {} xattrs not kept (the filesystem refused them to this user)",
            unpacked.refused_xattrs
        );
    }
    sync_tree(&tmp.path)?;
    Ok(NewLayer {
        diff_id,
        tmp,
        size: unpacked.size,
    })
}

/// Put an image in the store: its layers (in order: newly unpacked, or already there), its
/// config blob and tags. Returns the image id.
pub fn commit(
    store: &Store,
    diff_ids: &[String],
    mut new: Vec<NewLayer>,
    config: &[u8],
    manifest: Option<String>,
    source: &str,
    tags: &[Ref],
) -> Result<String> {
    let id = super::digest::sha256_of(config);
    let lock = store.lock()?;
    let known = store.images()?;
    let mut layers = Vec::new();
    let mut recs = Vec::new();
    for d in diff_ids {
        let tmp = new
            .iter()
            .position(|n| &n.diff_id == d)
            .map(|i| new.remove(i));
        let size = match &tmp {
            Some(n) => n.size,
            // A layer an image has twice (Docker's empty layers), or one already stored.
            None => recs
                .iter()
                .chain(known.iter().flat_map(|i| i.rec.layers.iter()))
                .find(|l| &l.diff_id == d)
                .map(|l| l.size)
                .unwrap_or_else(|| tree_size(&store.layer_path(d).unwrap_or_default())),
        };
        recs.push(LayerRec {
            diff_id: d.clone(),
            size,
        });
        layers.push((d.clone(), tmp.map(|n| n.tmp)));
    }
    let rec = Record {
        id: id.clone(),
        manifest,
        layers: recs,
        source: source.to_string(),
        imported: now(),
    };
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    store.commit(&lock, layers, &rec, config, &tags)?;
    Ok(id)
}

/// Bytes of file data below `dir` (for a layer whose size no record has).
fn tree_size(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The kinds of SOURCE, as `image import` tells them apart.
enum Source<'a> {
    Oci(&'a Path, Option<&'a str>),
    RootfsDir(&'a Path),
    File(&'a Path),
}

fn classify(source: &str) -> Result<Source<'_>> {
    // As given first; then without skopeo's transport names (oci:DIR[:REF], docker-archive:FILE).
    let candidates = [
        Some(source),
        source.strip_prefix("oci:"),
        source.strip_prefix("docker-archive:"),
    ];
    for s in candidates.into_iter().flatten() {
        let p = Path::new(s);
        if p.is_dir() {
            if p.join("oci-layout").is_file() {
                return Ok(Source::Oci(p, None));
            }
            return Ok(Source::RootfsDir(p));
        }
        if p.is_file() {
            return Ok(Source::File(p));
        }
        if let Some((dir, r)) = s.rsplit_once(':') {
            let d = Path::new(dir);
            if d.join("oci-layout").is_file() {
                return Ok(Source::Oci(d, Some(r)));
            }
        }
    }
    bail!("no such file or directory (SOURCE is an OCI layout DIR[:REF], a docker-archive, a rootfs tar or directory)")
}

/// Import SOURCE, tagging it NAME (or, for a docker-archive without NAME, the archive's own
/// tags). Returns the image id.
pub fn import(
    root: &Root,
    source: &str,
    name: Option<&str>,
    progress: &mut Progress,
) -> Result<String> {
    let tags = match name {
        Some(n) => vec![Ref::parse(n)?],
        None => vec![],
    };
    let store = Store::new(root);
    let id = (|| match classify(source)? {
        Source::Oci(dir, r) => super::oci::import(&store, dir, r, &tags, progress),
        Source::RootfsDir(dir) => super::rootfs::import_dir(&store, dir, &tags, progress),
        Source::File(f) => match super::docker_archive::scan(f)? {
            Some(scan) => super::docker_archive::import(&store, f, scan, tags.first(), progress),
            None => super::rootfs::import_tar(&store, f, &tags, progress),
        },
    })();
    progress.finish();
    id.with_context(|| format!("import {source}"))
}
