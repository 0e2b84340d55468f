//! A container's changes (`changes`) as one OCI layer tar: added and changed entries as they
//! are, deletions as `.wh.NAME`, opaque directories with `.wh..wh..opq` inside, a renamed
//! directory whole at its new path (its lower content too) and whited out at its old one,
//! mountpoints as the bare entries they are, and the directories on the way to each.
//!
//! Entries are written as `pack` writes a directory (the root as "./", then names in order,
//! each directory before what is in it, with the same headers), so packing the unpacked layer
//! again gives the same tar: `image save` of a committed image writes the layer with its
//! diff_id.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tar::{EntryType, Header};

use super::changes::{Change, From, Kind};
use crate::union::layer::{whiteout_name, WH_OPAQUE};

enum Item {
    /// A host file or directory (its data left out for a mountpoint).
    Host { host: PathBuf, data: bool },
    /// A whiteout or an opaque marker.
    Marker,
}

pub fn write(changes: &[Change], upper: &Path, lowers: &[PathBuf], w: impl Write) -> Result<()> {
    let mut items: BTreeMap<PathBuf, Item> = BTreeMap::new();
    for c in changes {
        match (&c.kind, &c.from) {
            (Kind::Deleted, _) | (_, From::None) => {
                let parent = c.path.parent().unwrap_or(Path::new(""));
                let name = c.path.file_name().context("a deletion of the root")?;
                items.insert(parent.join(whiteout_name(name)), Item::Marker);
            }
            (_, From::Path(host)) => {
                items.insert(
                    c.path.clone(),
                    Item::Host {
                        host: host.clone(),
                        data: !c.mountpoint,
                    },
                );
                if c.opaque {
                    items.insert(c.path.join(WH_OPAQUE), Item::Marker);
                }
            }
        }
    }
    // The directories on the way to each entry, as the upper has them (or the top-most lower
    // layer that has them).
    let mut missing = Vec::new();
    for p in items.keys() {
        for a in p.ancestors().skip(1) {
            if a.as_os_str().is_empty() || items.contains_key(a) {
                continue;
            }
            missing.push(a.to_path_buf());
        }
    }
    for a in missing {
        let host = std::iter::once(upper)
            .chain(lowers.iter().map(PathBuf::as_path))
            .map(|l| l.join(&a))
            .find(|p| p.symlink_metadata().is_ok_and(|m| m.is_dir()));
        if let Some(host) = host {
            items.insert(a, Item::Host { host, data: false });
        }
    }
    let mut b = tar::Builder::new(w);
    b.mode(tar::HeaderMode::Complete);
    super::pack::root_entry(&mut b, upper)?;
    let mut links = HashMap::new();
    for (path, item) in &items {
        match item {
            Item::Marker => empty_file(&mut b, path)?,
            Item::Host { host, data } => {
                let parent = host.parent().unwrap_or(Path::new("/"));
                let name = host.file_name().context("an entry without a name")?;
                let dfd = File::open(parent).with_context(|| format!("{}", parent.display()))?;
                super::pack::entry(&mut b, dfd.as_raw_fd(), name, host, path, &mut links, *data)?;
            }
        }
    }
    b.into_inner().context("finishing the layer tar")?.flush()?;
    Ok(())
}

/// An empty regular file: a whiteout or an opaque marker.
fn empty_file<W: Write>(b: &mut tar::Builder<W>, p: &Path) -> Result<()> {
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    b.append_data(&mut h, p, std::io::empty())
        .with_context(|| format!("{}", p.display()))
}
