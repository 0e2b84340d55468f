//! An OCI image layout (as umoci and skopeo write it): `index.json` names the manifests, each
//! `DIR:REF` by its `org.opencontainers.image.ref.name` annotation; blobs live in
//! `blobs/sha256/<hex>` and are checked against the digests that name them.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::digest::{sha256_hex, sha256_of, Compression};
use super::import::{commit, unpack_layer, Progress};
use super::oci_index::{for_this_platform, pick};
use super::reference::Ref;
use super::store::Store;

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

pub fn import(
    store: &Store,
    dir: &Path,
    want: Option<&str>,
    tags: &[Ref],
    progress: &mut Progress,
) -> Result<String> {
    let index: ImageIndex =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).context("index.json")?)
            .context("index.json")?;
    let mut desc = pick(index.manifests(), want)?.clone();
    if INDEX_TYPES.contains(&desc.media_type().to_string().as_str()) {
        let nested: ImageIndex =
            serde_json::from_slice(&small_blob(dir, &desc)?).context("nested image index")?;
        desc = for_this_platform(nested.manifests())?.clone();
    }
    let mt = desc.media_type().to_string();
    if !MANIFEST_TYPES.contains(&mt.as_str()) {
        bail!("manifest {}: unknown media type {mt}", desc.digest());
    }
    let manifest: ImageManifest =
        serde_json::from_slice(&small_blob(dir, &desc)?).context("image manifest")?;
    let config_raw = small_blob(dir, manifest.config())?;
    let config = super::config::parse(&config_raw)?;
    let diff_ids = config.rootfs().diff_ids().clone();
    let layers = manifest.layers();
    if diff_ids.len() != layers.len() {
        bail!(
            "the manifest has {} layers, the config's rootfs.diff_ids {}",
            layers.len(),
            diff_ids.len()
        );
    }
    // Each layer not yet stored, once (an image may hold the same layer twice).
    let todo: Vec<usize> = (0..layers.len())
        .filter(|&i| !store.has_layer(&diff_ids[i]) && !diff_ids[..i].contains(&diff_ids[i]))
        .collect();
    let mut kinds = Vec::new();
    for l in layers {
        kinds.push(compression_of(l)?);
    }
    progress.start(
        Some(todo.iter().map(|&i| layers[i].size()).sum()),
        todo.len() as u64,
    );
    let mut new = Vec::new();
    for &i in &todo {
        let l = &layers[i];
        let digest = l.digest().to_string();
        let f = File::open(blob_path(dir, &digest)?)
            .with_context(|| format!("layer {}: blob {digest}", i + 1))?;
        let layer = unpack_layer(
            store,
            progress.wrap(f),
            Some(kinds[i]),
            Some(&digest),
            Some(&diff_ids[i]),
        )
        .with_context(|| format!("layer {} ({digest})", i + 1))?;
        new.push(layer);
        progress.layer_done();
    }
    commit(
        store,
        &diff_ids,
        new,
        &config_raw,
        Some(desc.digest().to_string()),
        &dir.display().to_string(),
        tags,
    )
}

fn compression_of(l: &Descriptor) -> Result<Compression> {
    let mt = l.media_type().to_string();
    Ok(match mt.as_str() {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Compression::Zstd,
        _ => bail!("layer {}: unknown media type {mt}", l.digest()),
    })
}

fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf> {
    Ok(dir.join("blobs/sha256").join(sha256_hex(digest)?))
}

/// A manifest, index or config blob, read whole and checked against its descriptor.
fn small_blob(dir: &Path, d: &Descriptor) -> Result<Vec<u8>> {
    let digest = d.digest().to_string();
    let what = || format!("blob {digest}");
    if d.size() > 64 << 20 {
        bail!(
            "blob {digest}: {} bytes is too large for a manifest or config",
            d.size()
        );
    }
    let mut data = Vec::new();
    File::open(blob_path(dir, &digest)?)
        .with_context(what)?
        .take(d.size() + 1)
        .read_to_end(&mut data)
        .with_context(what)?;
    let got = sha256_of(&data);
    if got != digest {
        bail!("blob {digest}: digest mismatch: its content has digest {got}");
    }
    if data.len() as u64 != d.size() {
        bail!(
            "blob {digest}: {} bytes, its descriptor says {}",
            data.len(),
            d.size()
        );
    }
    Ok(data)
}
