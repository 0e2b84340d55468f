//! `image mount NAME DIR`: the image's layers as a read-only union at DIR (every write EROFS),
//! mounted through daemon/ like any strata mount; `image umount DIR` is `strata umount DIR`.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::daemon::MountRequest;
use crate::state::Root;

/// The mount request for image `name` at `dir`: its layers, top-most first, as `lowerdir=`, and
/// no upper, so the mount is read-only.
pub fn request(root: &Root, name: &str, dir: &Path) -> Result<MountRequest> {
    let img = super::ops::for_run(root, name)?;
    let lowers: Vec<String> = img
        .layers
        .iter()
        .map(|p| escape(&p.display().to_string()))
        .collect();
    Ok(MountRequest {
        options: vec![format!("lowerdir={}", lowers.join(":")), "ro".into()],
        source: Some(format!("strata-image:{}", super::ops::short(&img.id))),
        mountpoint: dir.to_path_buf(),
        foreground: false,
        log: None,
        grafts: vec![],
        root: Some(root.path.clone()),
    })
}

/// Where image `id` is mounted with `image mount`, if it is: its mounts carry the source
/// `strata-image:<short id>`.
pub fn mounted_at(id: &str) -> Option<PathBuf> {
    let want = format!("strata-image:{}", super::ops::short(id));
    crate::daemon::mount_table()
        .into_iter()
        .find(|e| e.source == want)
        .map(|e| e.point)
}

/// A path inside a `-o` value: `\`, `:` and `,` escaped with a backslash, as overlayfs takes it.
fn escape(p: &str) -> String {
    let mut s = String::with_capacity(p.len());
    for c in p.chars() {
        if matches!(c, '\\' | ':' | ',') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn separators_in_layer_paths_are_escaped() {
        assert_eq!(super::escape("/a:b,c\\d"), "/a\\:b\\,c\\\\d");
    }
}
