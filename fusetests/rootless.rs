//! Rootless: an unprivileged user mounts strata (through fusermount3), writes, deletes and
//! renames, and the upper holds `.wh.` whiteouts and `user.overlay.*` xattrs, never the
//! kernel's root-only formats. Where the filesystem beneath refuses a chown to the
//! unprivileged daemon, the intended owner is kept in a `user.` xattr and reported.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

const MAIN_SCRIPT: &str = r#"
set -eu
S="$1"; B="$2"; M="$B/mnt"
"$S" mount -o "lowerdir=$B/lower,upperdir=$B/upper,workdir=$B/work" "$M"
cat "$M/keep"
echo new > "$M/new"
echo more >> "$M/edit"
rm "$M/gone"
rm -r "$M/dir"
mkdir "$M/dir"
echo fresh > "$M/dir/fresh"
mv "$M/ren" "$M/ren2"
mkfifo "$M/fifo"
echo "LISTING"
ls -a "$M"
echo "DIR"
ls -a "$M/dir"
echo "REN2"
ls -a "$M/ren2"
"$S" umount "$M"
echo "DONE"
"#;

const CHOWN_SCRIPT: &str = r#"
set -eu
S="$1"; B="$2"; M="$B/mnt"
"$S" mount -o "lowerdir=$B/lower,upperdir=$B/upper,workdir=$B/work" "$M"
echo new > "$M/new"
chown 12345:12346 "$M/new" "$M/keep"
stat -c 'OWNER %n %u:%g' "$M/new" "$M/keep"
chmod 751 "$M/keep"
stat -c 'MODE %n %a' "$M/keep"
"$S" umount "$M"
"$S" mount -o "lowerdir=$B/lower,upperdir=$B/upper,workdir=$B/work" "$M"
stat -c 'REMOUNTED %n %u:%g' "$M/new" "$M/keep"
stat -c 'MODE AGAIN %n %a' "$M/keep"
"$S" umount "$M"
echo "DONE"
"#;

/// Without default_permissions the kernel checks nothing: strata must, for access(2) and open.
const ACCESS_SCRIPT: &str = r#"
set -u
S="$1"; B="$2"; M="$B/mnt"
"$S" mount -o "lowerdir=$B/lower,upperdir=$B/upper,workdir=$B/work" "$M" || exit 1
t() { if test "$1" "$2"; then echo "YES $1 ${2##*/}"; else echo "NO $1 ${2##*/}"; fi; }
t -x "$M/plain644"
t -w "$M/readonly444"
t -w "$M/rootfile"
t -r "$M/plain644"
t -w "$M/plain644"
t -x "$M/script755"
if echo x >> "$M/readonly444" 2>/dev/null; then echo "OPENED readonly444"; else echo "REFUSED readonly444"; fi
if echo x >> "$M/rootfile" 2>/dev/null; then echo "OPENED rootfile"; else echo "REFUSED rootfile"; fi
if cat "$M/secret600" >/dev/null 2>&1; then echo "OPENED secret600"; else echo "REFUSED secret600"; fi
echo x >> "$M/plain644" && echo "OPENED plain644"
"$S" umount "$M"
echo "DONE"
"#;

struct Fx {
    _guard: UnmountGuard,
    _tmp: tempfile::TempDir,
    base: PathBuf,
    lower: Layer,
    uid: u32,
    gid: u32,
}

fn fixture() -> Fx {
    assert!(
        is_root(),
        "this test must start as root (it creates a user and drops to it)"
    );
    assert!(
        fs::metadata("/usr/bin/fusermount3")
            .map(|m| m.mode() & 0o4000 != 0 && m.uid() == 0)
            .unwrap_or(false),
        "/usr/bin/fusermount3 is missing or not setuid root: rootless mounts cannot work"
    );
    let (uid, gid) = ensure_test_user();
    let tmp = tempfile::Builder::new()
        .prefix("strata-ft-rootless.")
        .tempdir()
        .unwrap();
    let base = tmp.path().canonicalize().unwrap();
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
    let lower = Layer::new(base.join("lower"));
    fs::create_dir(&lower.root).unwrap();
    lower
        .file("keep", "keep\n")
        .file("edit", "edit\n")
        .file("gone", "gone\n")
        .file("dir/a", "a")
        .file("dir/b", "b")
        .file("ren/inside", "inside");
    // The user's own image layer (as a rootless unpack would leave it).
    for rel in [
        "",
        "keep",
        "edit",
        "gone",
        "dir",
        "dir/a",
        "dir/b",
        "ren",
        "ren/inside",
    ] {
        lower.owner(rel, uid, gid);
    }
    for d in ["upper", "work", "mnt", "home"] {
        let p = base.join(d);
        fs::create_dir(&p).unwrap();
        lchown(&p, uid, gid).unwrap();
    }
    Fx {
        _guard: UnmountGuard(base.clone()),
        _tmp: tmp,
        base,
        lower,
        uid,
        gid,
    }
}

/// Run a script as the test user with (strata, base) as arguments.
fn run_as_user(f: &Fx, script: &str) -> CmdOut {
    let strata = strata_bin();
    let out = run_script_as_test_user(&f.base, script, &[strata.as_os_str(), f.base.as_os_str()]);
    assert!(
        !fuse_mounted(&f.base.join("mnt")),
        "still mounted after strata umount"
    );
    out
}

#[test]
fn an_unprivileged_user_mounts_and_writes() {
    let f = fixture();
    let out = run_as_user(&f, MAIN_SCRIPT);

    // What the user saw.
    let section = |name: &str| -> BTreeSet<String> {
        let after = out.stdout.split(&format!("{name}\n")).nth(1).unwrap_or("");
        after
            .lines()
            .take_while(|l| !["LISTING", "DIR", "REN2", "DONE"].contains(l))
            .filter(|l| *l != "." && *l != "..")
            .map(|l| l.to_string())
            .collect()
    };
    assert_eq!(
        section("LISTING"),
        set(&["keep", "edit", "new", "dir", "ren2", "fifo"]),
        "{}",
        out.stdout
    );
    assert_eq!(section("DIR"), set(&["fresh"]), "{}", out.stdout);
    assert_eq!(section("REN2"), set(&["inside"]), "{}", out.stdout);

    // What the host sees in the upper.
    let up = |r: &str| f.base.join("upper").join(r);
    assert_eq!(read(up("new")), "new\n");
    assert_eq!(
        (lstat(up("new")).uid(), lstat(up("new")).gid()),
        (f.uid, f.gid),
        "new file not owned by the user"
    );
    assert_eq!(read(up("edit")), "edit\nmore\n");
    for w in ["gone", "ren"] {
        let p = up(&format!(".wh.{w}"));
        let m = fs::symlink_metadata(&p)
            .unwrap_or_else(|e| panic!("no .wh.{w} whiteout in the upper: {e}"));
        assert!(m.is_file() && m.len() == 0, ".wh.{w} is not an empty file");
        assert!(
            !exists(up(w)),
            "{w} still exists in the upper next to its .wh. whiteout"
        );
    }
    let opaque = lgetxattr(&up("dir"), "user.overlay.opaque").ok();
    assert!(
        opaque.as_deref() == Some(b"y".as_slice()) || up("dir/.wh..wh..opq").exists(),
        "dir/ made over a whiteout is not opaque (user.overlay.opaque = {opaque:?}, no .wh..wh..opq)"
    );
    let redirect = lgetxattr(&up("ren2"), "user.overlay.redirect")
        .ok()
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    assert!(
        matches!(redirect.as_deref(), Some("ren") | Some("/ren")),
        "ren2 has user.overlay.redirect = {redirect:?}"
    );
    assert_eq!(kind(&lstat(up("fifo"))), 'p');
    // Nothing in the root-only kernel format.
    for (rel, e) in tree(&f.base.join("upper")) {
        assert!(
            e.kind != 'c',
            "{rel}: a character device (kernel whiteout) in a rootless upper"
        );
        for x in e.xattrs.keys() {
            assert!(!x.starts_with("trusted."), "{rel}: {x} in a rootless upper");
        }
    }
    assert_eq!(read(f.lower.path("gone")), "gone\n", "the lower changed");
}

#[test]
fn access_and_open_are_checked_against_the_modes_shown() {
    let f = fixture();
    f.lower
        .file_mode("plain644", "p\n", 0o644)
        .file_mode("readonly444", "r\n", 0o444)
        .file_mode("script755", "#!/bin/sh\n", 0o755)
        .file_mode("rootfile", "root\n", 0o644)
        .file_mode("secret600", "s\n", 0o600);
    for n in ["plain644", "readonly444", "script755"] {
        f.lower.owner(n, f.uid, f.gid);
    }
    let out = run_as_user(&f, ACCESS_SCRIPT);
    for want in [
        "NO -x plain644",
        "NO -w readonly444",
        "NO -w rootfile",
        "YES -r plain644",
        "YES -w plain644",
        "YES -x script755",
        "REFUSED readonly444",
        "REFUSED rootfile",
        "REFUSED secret600",
        "OPENED plain644",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == want),
            "expected `{want}`:\n{}",
            out.describe()
        );
    }
    // A refused open copies nothing up; the allowed one did.
    let up = f.base.join("upper");
    for n in ["readonly444", "rootfile", "secret600"] {
        assert!(!exists(up.join(n)), "{n} was copied up by a refused open");
    }
    assert_eq!(read(up.join("plain644")), "p\nx\n");
}

#[test]
fn a_refused_chown_is_kept_in_an_xattr_and_reported() {
    let f = fixture();
    let out = run_as_user(&f, CHOWN_SCRIPT);
    let mnt = f.base.join("mnt");
    let expect = |want: String| {
        assert!(
            out.stdout.contains(&want),
            "expected `{want}`:\n{}",
            out.describe()
        )
    };
    for tag in ["OWNER", "REMOUNTED"] {
        for n in ["new", "keep"] {
            expect(format!("{tag} {}/{n} 12345:12346", mnt.display()));
        }
    }
    // A chmod after the refused chown shows, then and after a remount.
    for tag in ["MODE", "MODE AGAIN"] {
        expect(format!("{tag} {}/keep 751", mnt.display()));
    }
    // The real owner on disk is the user; the intended one is in a user. xattr.
    let up = f.base.join("upper");
    for n in ["new", "keep"] {
        let st = lstat(up.join(n));
        assert_eq!((st.uid(), st.gid()), (f.uid, f.gid), "{n}: owner on disk");
        let x = llistxattr(&up.join(n)).unwrap();
        assert!(
            x.iter().any(|n| n.starts_with("user.")),
            "{n}: no user. xattr keeps the intended owner ({x:?})"
        );
    }
}
