//! A docker-archive's `manifest.json` and the small files beside it (configs, the links
//! Docker 25's OCI layout makes for layers), read in the first pass over the archive, and the
//! image a name picks from it. docker_archive imports what this finds.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::digest::decompressed;
use super::reference::{is_hex, Ref};
use super::tar::clean;

#[derive(Deserialize, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct Entry {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    pub layers: Vec<String>,
}

/// What the first pass found: manifest.json and the small files it may name.
pub struct Scan {
    pub manifest: Vec<Entry>,
    pub files: HashMap<PathBuf, Vec<u8>>,
    pub links: HashMap<PathBuf, PathBuf>,
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

/// The image NAME picks (by its RepoTags), or the only one.
pub fn pick<'a>(m: &'a [Entry], name: Option<&Ref>) -> Result<&'a Entry> {
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
