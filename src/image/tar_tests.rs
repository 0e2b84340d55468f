//! Unpacking tars made here: paths, replacement, deferred directory modes, links.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::header::parse_time;
use super::*;

/// A tar of (path, type, link target, data, mode) entries, written with raw names so that
/// names a careful writer refuses can be made.
fn tar_of(entries: &[(&str, EntryType, &str, &[u8], u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data, mode) in entries {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_000_000);
        h.set_cksum();
        out.write_all(h.as_bytes()).unwrap();
        out.write_all(data).unwrap();
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn unpack_err(entries: &[(&str, EntryType, &str, &[u8], u32)]) -> String {
    let d = tempfile::tempdir().unwrap();
    format!("{:#}", unpack(&tar_of(entries)[..], d.path()).unwrap_err())
}

#[test]
fn paths_are_made_relative_or_refused() {
    assert_eq!(clean(Path::new("./a/./b")).unwrap(), Path::new("a/b"));
    assert_eq!(clean(Path::new("./")).unwrap(), Path::new(""));
    assert!(clean(Path::new("a/../../b")).is_err());
    assert!(clean(Path::new("/etc/passwd")).is_err());
}

#[test]
fn pax_times_keep_their_fraction() {
    let t = parse_time("1700000000.25").unwrap();
    assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 250_000_000));
    let t = parse_time("-1.5").unwrap();
    assert_eq!((t.tv_sec, t.tv_nsec), (-2, 500_000_000));
    assert!(parse_time("12x").is_err());
}

#[test]
fn a_later_entry_replaces_an_earlier_and_directory_modes_come_last() {
    let d = tempfile::tempdir().unwrap();
    let t = tar_of(&[
        ("x", EntryType::Regular, "", b"old", 0o644),
        ("x", EntryType::Directory, "", b"", 0o555),
        ("x/f", EntryType::Regular, "", b"new", 0o600),
        ("l", EntryType::Link, "x/f", b"", 0o600),
    ]);
    let u = unpack(&t[..], d.path()).unwrap();
    assert_eq!(u.entries, 4);
    assert_eq!(u.size, 6);
    let x = std::fs::symlink_metadata(d.path().join("x")).unwrap();
    assert!(x.is_dir());
    assert_eq!(x.permissions().mode() & 0o7777, 0o555);
    assert_eq!(x.mtime(), 1_000_000);
    assert_eq!(std::fs::read(d.path().join("x/f")).unwrap(), b"new");
    assert_eq!(std::fs::metadata(d.path().join("l")).unwrap().nlink(), 2);
    std::fs::set_permissions(d.path().join("x"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn links_out_of_the_layer_or_to_nothing_are_refused() {
    let e = unpack_err(&[("a", EntryType::Link, "../x", b"", 0o644)]);
    assert!(
        e.contains("layer entry \"a\"") && e.contains("leave the layer"),
        "{e}"
    );
    let e = unpack_err(&[("a", EntryType::Link, "nothing", b"", 0o644)]);
    assert!(e.contains("does not hold before it"), "{e}");
    let e = unpack_err(&[
        ("d", EntryType::Directory, "", b"", 0o755),
        ("a", EntryType::Link, "d", b"", 0o644),
    ]);
    assert!(e.contains("a directory cannot be linked"), "{e}");
    let e = unpack_err(&[
        ("s", EntryType::Symlink, "/", b"", 0o777),
        ("s/etc", EntryType::Regular, "", b"x", 0o644),
    ]);
    assert!(e.contains("s is a symlink"), "{e}");
}
