//! The layer tar reader: bytes fed as a layer tar to the unpack path, into a fresh temporary
//! directory. Any input unpacks or fails with an error, never a panic, and nothing is written
//! outside that directory (its parent, also fresh, must stay holding only it).
#![no_main]

use std::os::unix::fs::PermissionsExt;

use libfuzzer_sys::fuzz_target;
use strata_parsers::image::tar;

fuzz_target!(|data: &[u8]| {
    let outer = tempfile::tempdir().expect("a temporary directory");
    let dir = outer.path().join("layer");
    std::fs::create_dir(&dir).expect("the layer directory");
    let _ = tar::unpack_split(data, &dir, None);
    let names: Vec<_> = std::fs::read_dir(outer.path())
        .expect("the temporary directory")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    assert_eq!(names, ["layer"], "an entry escaped the layer");
    writable(&dir);
});

/// Make every directory writable again, so the temporary directory can be removed (a layer
/// may hold read-only directories).
fn writable(dir: &std::path::Path) {
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            writable(&e.path());
        }
    }
}
