//! A root filesystem as a one-layer image: a tar (plain, gzip or zstd, told by its first bytes)
//! or a directory, which is packed into a layer tar on the fly.

use std::fs::File;
use std::path::Path;

use anyhow::{anyhow, Context, Result};

use super::import::{commit, unpack_layer, Progress};
use super::reference::Ref;
use super::store::Store;

pub fn import_tar(
    store: &Store,
    file: &Path,
    tags: &[Ref],
    progress: &mut Progress,
) -> Result<String> {
    let f = File::open(file).with_context(|| format!("{}", file.display()))?;
    progress.start(Some(f.metadata()?.len()), 1);
    let layer = unpack_layer(store, progress.wrap(f), None, None, None)?;
    progress.layer_done();
    finish(store, layer, file, tags)
}

pub fn import_dir(
    store: &Store,
    dir: &Path,
    tags: &[Ref],
    progress: &mut Progress,
) -> Result<String> {
    progress.start(None, 1);
    let (r, w) = std::io::pipe()?;
    let layer = std::thread::scope(|s| {
        let packer = s.spawn(move || super::pack::pack(dir, w));
        let unpacked = unpack_layer(store, progress.wrap(r), None, None, None);
        let packed = packer
            .join()
            .map_err(|_| anyhow!("packing {} panicked", dir.display()))?;
        // A packing error explains an unpacking one (a truncated stream), so it comes first.
        packed?;
        unpacked
    })?;
    progress.layer_done();
    finish(store, layer, dir, tags)
}

fn finish(
    store: &Store,
    layer: super::import::NewLayer,
    src: &Path,
    tags: &[Ref],
) -> Result<String> {
    let created = crate::volume::store::rfc3339(super::import::now() as i64);
    let diff = layer.diff_id.clone();
    let config = super::config::for_rootfs(&diff, &created, &src.display().to_string());
    commit(
        store,
        std::slice::from_ref(&diff),
        vec![layer],
        &config,
        None,
        &src.display().to_string(),
        tags,
    )
}
