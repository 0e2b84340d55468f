//! A `docker save` archive (docker-archive, as Docker and skopeo write it): `manifest.json`
//! names each image's config and layer tars inside the archive; the archive itself and each
//! layer may be plain, gzip or zstd. Read in two passes: the small files first, then the layers,
//! each streamed straight into the store.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::digest::{decompressed, sha256_of};
use super::import::{commit, unpack_layer, Progress};
use super::reference::{is_hex, Ref};
use super::store::Store;
use super::tar::clean;

#[derive(Deserialize, Clone)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// What the first pass found: manifest.json and the small files it may name.
pub struct Scan {
    manifest: Vec<Entry>,
    files: HashMap<PathBuf, Vec<u8>>,
    links: HashMap<PathBuf, PathBuf>,
}

const SMALL: u64 = 4 << 20;

fn entries_of(f: &Path) -> Result<tar::Archive<Box<dyn Read>>> {
    let file = File::open(f).with_context(|| format!("{}", f.display()))?;
    Ok(tar::Archive::new(decompressed(file)?))
}

/// Read the archive's small files; None if it is not a docker-archive (a rootfs tar, then).
pub fn scan(f: &Path) -> Result<Option<Scan>> {
    let mut ar = entries_of(f)?;
    let mut files = HashMap::new();
    let mut links = HashMap::new();
    for e in ar.entries().context("reading the archive")? {
        let mut e = e.context("reading the archive")?;
        let Ok(p) = clean(&e.path()?) else { continue };
        if !could_be_docker(&p) {
            // A root filesystem: stop reading it here, it is imported as one.
            return Ok(None);
        }
        let top_json = p.components().count() == 1 && p.extension().is_some_and(|x| x == "json");
        let blob = p.starts_with("blobs/sha256") && p.components().count() == 3;
        let kind = e.header().entry_type();
        if kind.is_symlink() && (blob || p.to_string_lossy().ends_with("layer.tar")) {
            if let Some(t) = e.link_name()? {
                let parent = p.parent().unwrap_or(Path::new("")).to_path_buf();
                if let Ok(t) = clean(&parent.join(t)) {
                    links.insert(p.clone(), t);
                }
            }
        }
        if kind.is_file() && (top_json || blob) && e.header().size()? <= SMALL {
            let mut v = Vec::new();
            e.read_to_end(&mut v)?;
            files.insert(p, v);
        }
    }
    let Some(m) = files.get(Path::new("manifest.json")) else {
        return Ok(None);
    };
    let Ok(manifest) = serde_json::from_slice::<Vec<Entry>>(m) else {
        return Ok(None);
    };
    Ok(Some(Scan {
        manifest,
        files,
        links,
    }))
}

/// Can a docker-archive hold this path? Its entries are manifest.json, repositories, configs
/// (`<hex>.json`), layers (`<hex>.tar`, `<hex>/layer.tar` with VERSION and json beside it) and,
/// from Docker 25 on, an OCI layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`).
fn could_be_docker(p: &Path) -> bool {
    let mut c = p
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    let Some(first) = c.next() else {
        return true;
    };
    let id_dir = first.len() == 64 && is_hex(&first);
    if c.next().is_some() {
        return id_dir || first == "blobs";
    }
    id_dir
        || first == "blobs"
        || first == "repositories"
        || first == "oci-layout"
        || first.ends_with(".json")
        || first.ends_with(".tar")
}

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

/// The image NAME picks (by its RepoTags), or the only one.
fn pick<'a>(m: &'a [Entry], name: Option<&Ref>) -> Result<&'a Entry> {
    if let [one] = m {
        return Ok(one);
    }
    let all: Vec<String> = m
        .iter()
        .flat_map(|e| e.repo_tags.iter().flatten().cloned())
        .collect();
    if m.is_empty() {
        bail!("manifest.json names no image");
    }
    let Some(n) = name else {
        bail!(
            "the archive holds {} images: name one (it has: {})",
            m.len(),
            all.join(", ")
        );
    };
    m.iter()
        .find(|e| {
            e.repo_tags
                .iter()
                .flatten()
                .any(|t| Ref::parse(t).is_ok_and(|r| &r == n))
        })
        .with_context(|| {
            format!(
                "the archive holds no image {n} (it has: {})",
                all.join(", ")
            )
        })
}
