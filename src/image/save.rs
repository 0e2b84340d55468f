//! `image save NAME DIR` (an OCI image layout, as umoci and skopeo read it) and `image save
//! --format docker-archive -o FILE` (what `docker load` reads): the image's config, a manifest
//! and each layer as an uncompressed tar written from the store by `pack`.
//!
//! A layer tar is written again from its unpacked directory and the record of the rest of the
//! tar it came from (`split`), byte for byte, so its digest is its diff_id and the saved image
//! keeps its id. A layer without a record (imported before records were kept) is written by
//! `pack`, as `import DIR` and `commit` write theirs: another tool's layer then gets a new
//! digest, the saved config names the new diff_ids (a new image id), and a warning says so.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::digest::{sha256_hex, sha256_of};
use super::ops::resolve;
use super::store::Store;
use crate::state::Root;

pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Format {
    Oci,
    DockerArchive,
}

/// One layer written out: where, its digest and size.
struct Blob {
    digest: String,
    size: u64,
}

/// Write the tar of layer `diff_id` to `dst` (a new file): its digest and size. The tar it
/// was imported from, when its record was kept and the layer still matches it; else `pack`.
fn write_layer(store: &Store, diff_id: &str, dst: &Path) -> Result<Blob> {
    let layer = store.layer_path(diff_id)?;
    let split = store.split_path(diff_id)?;
    if split.is_file() {
        let b = write_with(dst, |w| super::split::rebuild(&split, &layer, w));
        match b {
            Ok(b) if b.digest == diff_id => return Ok(b),
            _ => {}
        }
    }
    write_with(dst, |w| super::pack::pack(&layer, w))
}

fn write_with(
    dst: &Path,
    f: impl FnOnce(&mut HashingWriter<BufWriter<File>>) -> Result<()>,
) -> Result<Blob> {
    let file = File::create(dst).with_context(|| format!("{}", dst.display()))?;
    let mut h = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    f(&mut h)?;
    let (digest, size, w) = h.finish();
    w.into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
        .context("sync the layer tar")?;
    Ok(Blob { digest, size })
}

/// Save image `name` as `format` at `out` (a directory for an OCI layout, a file for a
/// docker-archive).
pub fn save(root: &Root, name: &str, format: Format, out: &Path) -> Result<String> {
    // Returns the saved image's id: the image's own, or a new one when a layer changed.
    let store = Store::new(root);
    let (rec, config, tag) = {
        let _l = store.lock()?;
        let images = store.images()?;
        let (i, tag) = resolve(&images, name)?;
        let tag = tag.or_else(|| {
            let mut t = i.tags.clone();
            t.sort();
            t.into_iter().next()
        });
        (i.rec.clone(), i.config.clone(), tag)
    };
    // Blobs go in `blobs/sha256` for both formats (Docker 25's docker-archive is laid out so
    // too); a docker-archive is then the tar of that directory with manifest.json beside.
    let work = match format {
        Format::Oci => {
            if out.exists()
                && fs::read_dir(out)?.next().is_some()
                && !out.join("oci-layout").is_file()
            {
                bail!("{}: not empty and not an OCI layout", out.display());
            }
            fs::create_dir_all(out.join("blobs/sha256"))
                .with_context(|| format!("{}", out.display()))?;
            out.to_path_buf()
        }
        Format::DockerArchive => {
            let parent = out
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let w = parent.join(format!(".strata-save-{}", std::process::id()));
            fs::create_dir_all(w.join("blobs/sha256"))?;
            w
        }
    };
    let cleanup = Cleanup(match format {
        Format::DockerArchive => Some(work.clone()),
        Format::Oci => None,
    });
    let blobs = work.join("blobs/sha256");
    let mut layers = Vec::new();
    let mut changed = 0;
    for (n, l) in rec.layers.iter().enumerate() {
        let tmp = blobs.join(format!(".layer-{n}.tmp"));
        let b = write_layer(&store, &l.diff_id, &tmp)
            .with_context(|| format!("layer {}", l.diff_id))?;
        fs::rename(&tmp, blobs.join(sha256_hex(&b.digest)?))?;
        if b.digest != l.diff_id {
            changed += 1;
        }
        layers.push(b);
    }
    let config = if changed > 0 {
        eprintln!(
            "strata: warning: {changed} layer(s) written again differ from the tars they were imported from: the saved image has new diff_ids and a new id"
        );
        let mut c: Value = serde_json::from_slice(&config).context("image config")?;
        c["rootfs"]["diff_ids"] =
            json!(layers.iter().map(|b| b.digest.clone()).collect::<Vec<_>>());
        serde_json::to_vec(&c)?
    } else {
        config
    };
    let config_digest = sha256_of(&config);
    put_blob(&blobs, &config)?;
    match format {
        Format::Oci => {
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": {"mediaType": CONFIG, "digest": config_digest, "size": config.len()},
                "layers": layers.iter().map(|b| json!({"mediaType": LAYER_TAR, "digest": b.digest, "size": b.size})).collect::<Vec<_>>(),
            });
            let manifest = serde_json::to_vec(&manifest)?;
            let mdigest = put_blob(&blobs, &manifest)?;
            let mut desc =
                json!({"mediaType": MANIFEST, "digest": mdigest, "size": manifest.len()});
            let ref_name = tag.as_deref().map(ref_name_of);
            if let Some(r) = &ref_name {
                desc["annotations"] = json!({REF_NAME: r});
            }
            // Keep the other manifests of an existing layout, replacing one of the same name.
            let mut manifests: Vec<Value> = match fs::read(out.join("index.json")) {
                Ok(b) => serde_json::from_slice::<Value>(&b)
                    .context("index.json")?
                    .get("manifests")
                    .and_then(|m| m.as_array())
                    .cloned()
                    .unwrap_or_default(),
                Err(_) => vec![],
            };
            manifests.retain(|m| {
                ref_name.is_none()
                    || m.pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1")))
                        .and_then(|v| v.as_str())
                        != ref_name.as_deref()
            });
            manifests.push(desc);
            let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
            write_file(
                &out.join("oci-layout"),
                br#"{"imageLayoutVersion":"1.0.0"}"#,
            )?;
            write_file(&out.join("index.json"), &serde_json::to_vec(&index)?)?;
        }
        Format::DockerArchive => {
            let hex = |d: &str| sha256_hex(d).map(|h| format!("blobs/sha256/{h}"));
            let manifest = json!([{
                "Config": hex(&config_digest)?,
                "RepoTags": tag.iter().collect::<Vec<_>>(),
                "Layers": layers.iter().map(|b| hex(&b.digest)).collect::<Result<Vec<_>>>()?,
            }]);
            write_file(&work.join("manifest.json"), &serde_json::to_vec(&manifest)?)?;
            archive(&work, out)?;
        }
    }
    drop(cleanup);
    Ok(config_digest)
}

/// The ref name an OCI layout gives a tag: the tag alone, as skopeo's `oci:DIR:TAG` names it.
fn ref_name_of(tag: &str) -> String {
    match tag.rsplit_once(':') {
        Some((_, t)) if !t.contains('/') => t.to_string(),
        _ => "latest".to_string(),
    }
}

fn put_blob(blobs: &Path, data: &[u8]) -> Result<String> {
    let d = sha256_of(data);
    write_file(&blobs.join(sha256_hex(&d)?), data)?;
    Ok(d)
}

fn write_file(p: &Path, data: &[u8]) -> Result<()> {
    let mut f = File::create(p).with_context(|| format!("{}", p.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

/// The docker-archive: manifest.json and the blobs, written to a temporary file renamed to
/// `out` once complete.
fn archive(work: &Path, out: &Path) -> Result<()> {
    let tmp = PathBuf::from(format!("{}.tmp-{}", out.display(), std::process::id()));
    let f = File::create(&tmp).with_context(|| format!("{}", tmp.display()))?;
    let mut b = tar::Builder::new(BufWriter::with_capacity(1 << 20, f));
    b.mode(tar::HeaderMode::Deterministic);
    let r = (|| -> Result<()> {
        b.append_path_with_name(work.join("manifest.json"), "manifest.json")?;
        let mut names: Vec<_> = fs::read_dir(work.join("blobs/sha256"))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for n in names {
            let p = work.join("blobs/sha256").join(&n);
            b.append_path_with_name(&p, Path::new("blobs/sha256").join(&n))?;
        }
        let f = b.into_inner()?.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok(())
    })();
    if let Err(e) = r {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("{}", out.display()));
    }
    fs::rename(&tmp, out).with_context(|| format!("{}", out.display()))
}

struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_dir_all(p);
        }
    }
}

/// A writer that hashes and counts what goes through it.
pub struct HashingWriter<W> {
    inner: W,
    hash: sha2::Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        use sha2::Digest;
        HashingWriter {
            inner,
            hash: sha2::Sha256::new(),
            bytes: 0,
        }
    }

    /// `sha256:<hex>`, the byte count and the inner writer.
    pub fn finish(self) -> (String, u64, W) {
        use sha2::Digest;
        (
            format!("sha256:{}", super::digest::hex(&self.hash.finalize())),
            self.bytes,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
