//! POSIX ACLs as a user meets them with setfacl and getfacl: a directory's default ACL is
//! inherited by what is made in it (and the umask is then not applied), the umask applies
//! everywhere else, and the kernel grants and refuses access by the ACL's entries (xfstests
//! generic/099, generic/319, generic/444).

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// Run `script` with `sh -c` as root, `$1`.. being `args`; it must succeed. Its stdout.
fn sh(script: &str, args: &[&Path]) -> String {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script).arg("sh").args(args);
    run_ok(&mut c).stdout
}

/// `getfacl` of `p`: its entries, one per line, without the comment header.
fn acl_of(p: &Path) -> String {
    sh("getfacl -cp \"$1\"", &[p])
        .lines()
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The permission bits of `p`, in octal as ls and stat print them.
fn mode_of(p: &Path) -> String {
    format!("{:o}", lstat(p).mode() & 0o7777)
}

/// The default ACL u::rwx,u:1234:r-x,g::r-x,m::rwx,o::r-x asks for a new file (mode 0666) to be
/// rw-rw-r-- with user 1234's entry kept (masked to r--), and a new directory (0777) to be
/// rwxrwxr-x with the default ACL again: whatever the umask (077 here) says, as on kernel
/// overlayfs. Also where the entry replaces a deleted lower one (made in the workdir first).
#[test]
fn a_new_entry_takes_its_directorys_default_acl_and_not_the_umask() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("d/gone", "x");
            l.file("d/gonedir/x", "x");
        })
        .mount();
    m.run(|c| {
        let d = c.p("d");
        sh(
            "setfacl -d -m u::rwx,u:1234:r-x,g::r-x,m::rwx,o::r-x \"$1\" && \
             rm \"$1/gone\" && rm -r \"$1/gonedir\"",
            &[&d],
        );
        sh(
            "umask 077 && cd \"$1\" && touch f gone && mkdir sub gonedir && mkfifo p",
            &[&d],
        );
        let file_acl = "user::rw-\nuser:1234:r-x\t#effective:r--\ngroup::r-x\t#effective:r--\nmask::rw-\nother::r--";
        let dir_acl = "user::rwx\nuser:1234:r-x\ngroup::r-x\nmask::rwx\nother::r-x";
        let default = "default:user::rwx\ndefault:user:1234:r-x\ndefault:group::r-x\ndefault:mask::rwx\ndefault:other::r-x";
        for name in ["f", "gone", "p"] {
            let p = c.p(&format!("d/{name}"));
            assert_eq!(mode_of(&p), "664", "d/{name}: mode in the mount");
            assert_eq!(acl_of(&p), file_acl, "d/{name}: its ACL in the mount");
            let u = c.u(&format!("d/{name}"));
            assert_eq!(acl_of(&u), file_acl, "d/{name}: its ACL in the upper");
        }
        for name in ["sub", "gonedir"] {
            let p = c.p(&format!("d/{name}"));
            assert_eq!(mode_of(&p), "775", "d/{name}: mode in the mount");
            assert_eq!(
                acl_of(&p),
                format!("{dir_acl}\n{default}"),
                "d/{name}: its ACLs in the mount"
            );
            let u = c.u(&format!("d/{name}"));
            assert_eq!(
                acl_of(&u),
                format!("{dir_acl}\n{default}"),
                "d/{name}: its ACLs in the upper"
            );
        }
        // And below the new directory, the same again.
        sh("umask 077 && touch \"$1/deeper\"", &[&c.p("d/sub")]);
        assert_eq!(acl_of(&c.p("d/sub/deeper")), file_acl, "d/sub/deeper");
    });
}

/// Without a default ACL on the directory the umask applies as always, and a new entry has no
/// ACL of its own.
#[test]
fn without_a_default_acl_the_umask_applies() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("d/x", "x").dir("e");
        })
        .mount();
    m.run(|c| {
        sh(
            "umask 027 && cd \"$1\" && touch f && mkdir sub && mkfifo p && mknod n c 1 3",
            &[&c.p("d")],
        );
        for (name, mode) in [("f", "640"), ("sub", "750"), ("p", "640"), ("n", "640")] {
            let p = c.p(&format!("d/{name}"));
            assert_eq!(mode_of(&p), mode, "d/{name}: mode with umask 027");
            assert_eq!(
                lgetxattr(&p, "system.posix_acl_access").map_err(|e| e.raw_os_error()),
                Err(Some(libc::ENODATA)),
                "d/{name}: an access ACL"
            );
        }
        // A file the kernel creates with open(2) keeps the umask too.
        sh("umask 077 && echo x > \"$1/new\"", &[&c.p("e")]);
        assert_eq!(mode_of(&c.p("e/new")), "600", "e/new with umask 077");
    });
}

/// A new directory in a set-group-ID directory with a default ACL gets the directory's group,
/// the set-group-ID bit and the inherited ACL (generic/444).
#[test]
fn a_set_group_id_directory_with_a_default_acl_passes_on_both() {
    let m = Builder::new(1).mount();
    m.run(|c| {
        let d = c.p("d");
        mkdir(&d);
        lchown(&d, 0, 4321).unwrap();
        chmod(&d, 0o2775).unwrap();
        sh("setfacl -d -m u::rwx,g::rwx,o::r-x \"$1\"", &[&d]);
        sh(
            "umask 077 && mkdir \"$1/sub\" && touch \"$1/f\"",
            &[&d],
        );
        let sub = c.p("d/sub");
        assert_eq!(lstat(&sub).gid(), 4321, "d/sub: group");
        assert_eq!(mode_of(&sub), "2775", "d/sub: mode (set-group-ID kept)");
        assert_eq!(
            acl_of(&sub),
            "user::rwx\ngroup::rwx\nother::r-x\ndefault:user::rwx\ndefault:group::rwx\ndefault:other::r-x",
            "d/sub: ACLs"
        );
        assert_eq!(lstat(c.p("d/f")).gid(), 4321, "d/f: group");
        assert_eq!(mode_of(&c.p("d/f")), "664", "d/f: mode");
    });
}

/// The kernel grants and refuses by the ACL's entries, not by the mode bits alone: a user
/// named with r-- reads a 0600 file (the mask allows it), a user named with --- cannot read a
/// 0644 file.
#[test]
fn access_is_granted_and_refused_by_acl_entries() {
    let (uid, _) = ensure_test_user();
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file_mode("granted", "g", 0o600);
            l.file_mode("refused", "r", 0o644);
        })
        .mount();
    m.run(move |c| {
        let (g, r) = (c.p("granted"), c.p("refused"));
        sh(
            &format!("setfacl -m u:{uid}:r--,m::r-- \"$1\" && setfacl -m u:{uid}:--- \"$2\""),
            &[&g, &r],
        );
        let cat = |p: &Path| {
            run_cmd(
                &mut as_test_user(&[os("cat").as_os_str(), p.as_os_str()]),
                CMD_TIMEOUT,
            )
        };
        let out = cat(&g);
        assert!(
            out.ok(),
            "the named user reads the 0600 file its ACL entry grants: {}",
            out.describe()
        );
        assert_eq!(out.stdout, "g");
        let out = cat(&r);
        assert!(
            !out.ok(),
            "the named user read a file its ACL entry refuses: {}",
            out.describe()
        );
        assert!(
            out.stderr.contains("Permission denied"),
            "{}",
            out.describe()
        );
    });
}
