//! The layer tar reader run by a user other than root (scripts/fuzz runs this target as
//! nobody): what the filesystem refuses it (another owner, a device node) goes into the
//! union's override xattr instead of chown/mknod. Any input unpacks or fails with an error,
//! never a panic; nothing is written outside the fresh layer directory; and every override
//! xattr it leaves reads as `uid:gid:0mode` with a type the entry can stand for (a directory
//! for a directory, a file, a char or a block device for a regular file).
#![no_main]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use strata_parsers::image::tar;
use strata_parsers::union::xattr::OVERRIDE_XATTR;

fuzz_target!(|data: &[u8]| {
    assert_ne!(
        unsafe { libc::geteuid() },
        0,
        "run this target as a user other than root (scripts/fuzz does)"
    );
    let outer = tempfile::tempdir().expect("a temporary directory");
    let dir = outer.path().join("layer");
    std::fs::create_dir(&dir).expect("the layer directory");
    let _ = tar::unpack_split(data, &dir, None);
    let names: Vec<_> = std::fs::read_dir(outer.path())
        .expect("the temporary directory")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    assert_eq!(names, ["layer"], "an entry escaped the layer");
    check(&dir);
});

/// Check each entry's override xattr, and make every directory writable again so the temporary
/// directory can be removed (a layer may hold read-only directories).
fn check(p: &Path) {
    let Ok(st) = std::fs::symlink_metadata(p) else {
        return;
    };
    let ft = st.file_type();
    if let Some(v) = get(p, OVERRIDE_XATTR) {
        let s = std::str::from_utf8(&v).expect("an override in UTF-8");
        let f: Vec<&str> = s.split(':').collect();
        assert_eq!(f.len(), 3, "{s:?}");
        f[0].parse::<u32>().expect("a uid");
        f[1].parse::<u32>().expect("a gid");
        assert!(f[2].starts_with('0'), "{s:?}");
        let mode = u32::from_str_radix(f[2], 8).expect("an octal mode");
        let kind = mode & libc::S_IFMT;
        if ft.is_dir() {
            assert_eq!(kind, libc::S_IFDIR, "{s:?} on a directory");
        } else if ft.is_file() {
            assert!(
                [libc::S_IFREG, libc::S_IFCHR, libc::S_IFBLK].contains(&kind),
                "{s:?} on a file"
            );
        } else {
            panic!("{s:?} on a {ft:?}");
        }
    }
    if ft.is_dir() {
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            check(&e.path());
        }
    }
}

fn get(p: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(p.as_os_str().as_bytes()).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| {
        buf.truncate(r as usize);
        buf
    })
}
