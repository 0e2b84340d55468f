//! A `docker save` archive (docker-archive, as Docker and skopeo write it): `manifest.json`
//! names each image's config and layer tars inside the archive; the archive itself and each
//! layer may be plain, gzip or zstd. Read in two passes: the small files first (docker_manifest),
//! then the layers, each streamed straight into the store.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::digest::{decompressed, sha256_of};
use super::docker_manifest::pick;
pub use super::docker_manifest::{scan, Scan};
use super::import::{commit, unpack_layer, Progress};
use super::reference::{is_hex, Ref};
use super::store::Store;
use super::tar::clean;

pub fn import(
    store: &Store,
    f: &Path,
    scan: Scan,
    name: Option<&Ref>,
    progress: &mut Progress,
) -> Result<String> {
    let entry = pick(&scan.manifest, name)?;
    let tags = match name {
        Some(n) => vec![n.clone()],
        None => entry
            .repo_tags
            .iter()
            .flatten()
            .map(|t| Ref::parse(t))
            .collect::<Result<_>>()
            .context("manifest.json RepoTags")?,
    };
    let config_path = clean(Path::new(&entry.config)).context("manifest.json Config")?;
    let config_raw = scan
        .files
        .get(&config_path)
        .with_context(|| {
            format!(
                "config {} named by manifest.json is not in the archive",
                entry.config
            )
        })?
        .clone();
    // Docker names the config by its digest (`<hex>.json`, `blobs/sha256/<hex>`): check it.
    let stem = config_path
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let got = sha256_of(&config_raw);
    if stem.len() == 64 && is_hex(&stem) && got != format!("sha256:{stem}") {
        bail!(
            "config {}: digest mismatch: its content has digest {got}",
            entry.config
        );
    }
    let config = super::config::parse(&config_raw)?;
    let diff_ids = config.rootfs().diff_ids().clone();
    if diff_ids.len() != entry.layers.len() {
        bail!(
            "manifest.json names {} layers, the config's rootfs.diff_ids {}",
            entry.layers.len(),
            diff_ids.len()
        );
    }
    // Archive path of each layer still to unpack -> the diff_id it must have.
    let mut want: BTreeMap<PathBuf, String> = BTreeMap::new();
    for (l, d) in entry.layers.iter().zip(&diff_ids) {
        if store.has_layer(d) || want.values().any(|w| w == d) {
            continue;
        }
        let mut p = clean(Path::new(l)).context("manifest.json Layers")?;
        for _ in 0..8 {
            match scan.links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        want.insert(p, d.clone());
    }
    let mut new = Vec::new();
    if !want.is_empty() {
        let file = File::open(f)?;
        progress.start(Some(file.metadata()?.len()), want.len() as u64);
        let mut ar = tar::Archive::new(decompressed(progress.wrap(file))?);
        for e in ar.entries().context("reading the archive")? {
            let mut e = e.context("reading the archive")?;
            let Ok(p) = clean(&e.path()?) else { continue };
            let Some(d) = want.remove(&p) else { continue };
            let layer = unpack_layer(store, &mut e, None, None, Some(&d))
                .with_context(|| format!("layer {}", p.display()))?;
            new.push(layer);
            progress.layer_done();
            if want.is_empty() {
                break;
            }
        }
        if let Some((p, _)) = want.iter().next() {
            bail!(
                "layer {} named by manifest.json is not in the archive",
                p.display()
            );
        }
    }
    commit(
        store,
        &diff_ids,
        new,
        &config_raw,
        None,
        &f.display().to_string(),
        &tags,
    )
}
