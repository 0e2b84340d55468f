//! A docker-archive's first pass (src/image/docker_manifest.rs): bytes as the archive file
//! (plain or compressed, as `image import` is given it), or, when the first byte is odd, the
//! rest as the manifest.json of an archive holding only it. Any input is a scan, "not a
//! docker-archive" or an error, never a panic; every path the scan keeps stays inside the
//! archive; and naming an image by one of its RepoTags picks an image carrying that tag.
#![no_main]

use std::io::Write;
use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use strata_parsers::image::docker_manifest::{pick, scan};
use strata_parsers::image::reference::Ref;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut f = tempfile::NamedTempFile::new().expect("a temporary file");
    if mode & 1 == 1 {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(rest.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "manifest.json", rest)
            .expect("a tar in memory");
        f.write_all(&b.into_inner().expect("a tar in memory"))
    } else {
        f.write_all(data)
    }
    .expect("the temporary file");
    let Ok(Some(s)) = scan(f.path()) else {
        return;
    };
    let inside = |p: &Path| p.components().all(|c| matches!(c, Component::Normal(_)));
    for p in s.files.keys().chain(s.links.keys()).chain(s.links.values()) {
        assert!(inside(p), "{p:?}");
    }
    let only = pick(&s.manifest, None);
    assert_eq!(only.is_ok(), s.manifest.len() == 1);
    for e in &s.manifest {
        for t in e.repo_tags.iter().flatten() {
            let Ok(r) = Ref::parse(t) else { continue };
            let got = pick(&s.manifest, Some(&r)).expect("an image named by its own tag");
            assert!(
                got.repo_tags
                    .iter()
                    .flatten()
                    .any(|g| Ref::parse(g).is_ok_and(|g| g == r)),
                "{r} picked an image without that tag"
            );
        }
    }
});
