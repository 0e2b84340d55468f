//! fuse-overlayfs's owner and presentation options: uidmapping/gidmapping (owners shown through
//! the mapping, stored through its inverse, unmapped ids refused, all of it across copy-up and
//! remount, and the owners on disk untouched, as root and as an unprivileged user inside its
//! own user namespace; lowers on idmapped mounts, as podman gives them
//! for `--uidmap`, mapped once), the squash options, static_nlink, noacl and the thread
//! options.

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

/// The example of fuse-overlayfs's man page: disk 0 shown as 1000, disk 1.. as 110000...
const MAP: &str = "uidmapping=0:1000:1:1:110000:65536,gidmapping=0:1000:1:1:110000:65536";

fn owners(p: &std::path::Path) -> (u32, u32) {
    let m = lstat(p);
    (m.uid(), m.gid())
}

fn layers() -> Builder {
    Builder::new(1).lower(0, |l| {
        l.file("f0", "zero\n").owner("f0", 0, 0);
        l.file("f1", "one\n").owner("f1", 1, 1);
        l.file("f5", "five\n").owner("f5", 5, 5);
        l.file("far", "far\n").owner("far", 70000, 70000);
        l.dir("d/sub1")
            .dir("d/sub2")
            .owner("d", 1, 1)
            .mode("d", 0o777);
    })
}

/// A POSIX ACL xattr value (version 2) granting user `uid` read access.
fn acl_with_user(uid: u32) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, u32::MAX), // owner
        (0x02, 4, uid),            // named user
        (0x04, 4, u32::MAX),       // group
        (0x10, 4, u32::MAX),       // mask
        (0x20, 4, u32::MAX),       // other
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

fn acl_user(v: &[u8]) -> u32 {
    u32::from_le_bytes(v[4 + 8 + 4..4 + 8 + 8].try_into().unwrap())
}

#[test]
fn owners_are_shown_through_the_mapping_and_stored_through_its_inverse() {
    assert!(is_root(), "needs root (setpriv to act as a mapped user)");
    let mut m = layers().opt(MAP).mount();
    let check = |c: &Ctx| {
        assert_eq!(owners(&c.p("f0")), (1000, 1000), "disk 0");
        assert_eq!(owners(&c.p("f1")), (110000, 110000), "disk 1");
        assert_eq!(
            owners(&c.p("far")),
            (65534, 65534),
            "disk 70000 is unmapped"
        );
        assert_eq!(owners(&c.p("")), (1000, 1000), "the root directory");
    };
    m.run(move |c| {
        check(&c);
        // A mapped user creates: stored as the disk id it maps to.
        let out = run_cmd(
            Command::new("setpriv")
                .args([
                    "--reuid=110004",
                    "--regid=110004",
                    "--clear-groups",
                    "touch",
                ])
                .arg(c.p("d/made")),
            CMD_TIMEOUT,
        );
        assert!(
            out.ok(),
            "a mapped user could not create: {}",
            out.describe()
        );
        assert_eq!(owners(&c.p("d/made")), (110004, 110004));
        assert_eq!(owners(&c.u("d/made")), (5, 5), "on disk");
        // Root (0) is outside the mapping's shown ids: what it makes is stored as owned by the
        // overflow id, as fuse-overlayfs stores it (disk 65534, shown through the mapping).
        std::fs::write(c.p("rootmade"), "x").unwrap();
        assert_eq!(owners(&c.u("rootmade")), (65534, 65534), "on disk");
        assert_eq!(owners(&c.p("rootmade")), (175533, 175533));
        // chown stores the inverse; an unmapped id is refused and changes nothing.
        lchown(&c.p("f5"), 110009, 110009).unwrap();
        assert_eq!(owners(&c.p("f5")), (110009, 110009));
        assert_eq!(owners(&c.u("f5")), (10, 10), "chown stored on disk");
        assert_errno(
            lchown(&c.p("f0"), 5, 5),
            libc::EINVAL,
            "chown to an unmapped id",
        );
        assert!(!exists(c.u("f0")), "a refused chown copied f0 up");
        // A copy-up keeps the disk owner.
        append(c.p("f1"), "more\n");
        assert_eq!(owners(&c.u("f1")), (1, 1));
        assert_eq!(owners(&c.p("f1")), (110000, 110000));
        // POSIX ACL entries are mapped both ways.
        lsetxattr(
            &c.p("f0"),
            "system.posix_acl_access",
            &acl_with_user(110005),
            0,
        )
        .unwrap();
        let shown = lgetxattr(&c.p("f0"), "system.posix_acl_access").unwrap();
        assert_eq!(acl_user(&shown), 110005);
        let stored = lgetxattr(&c.u("f0"), "system.posix_acl_access").unwrap();
        assert_eq!(acl_user(&stored), 6, "ACL entry on disk");
        assert_errno(
            lsetxattr(&c.p("f5"), "system.posix_acl_access", &acl_with_user(3), 0),
            libc::EINVAL,
            "an ACL naming an unmapped user",
        );
    });
    m.remount();
    m.run(move |c| {
        check(&c);
        assert_eq!(owners(&c.p("f5")), (110009, 110009));
        assert_eq!(owners(&c.p("d/made")), (110004, 110004));
        assert_eq!(owners(&c.p("f1")), (110000, 110000));
    });
    // The lower is as it was.
    assert_eq!(owners(&m.l(0, "f0")), (0, 0));
    assert_eq!(owners(&m.l(0, "f5")), (5, 5));
}

/// podman's rootful `--uidmap 0:100000:65536`: containers/storage hands the lowers over through
/// an idmapped mount (owners already seen as 100000+k) *and* passes uidmapping=:0:100000:65536.
/// The kernel has mapped those lowers once; strata must not map them again (fuse-overlayfs
/// does, and shows the image's files as nobody's, so the container cannot start). Root of the
/// container (host 100000) owns the image's files, its writes are stored as 0 in the upper, and
/// host root's (podman's) files are the overflow id's.
#[test]
fn lowers_on_an_idmapped_mount_are_mapped_once() {
    assert!(is_root(), "needs root (idmapped mounts, setpriv)");
    let mut m = Builder::new(1)
        .lower(0, |l| {
            l.dir("etc")
                .file("etc/passwd", "root:x:0:0::/root:/bin/sh\n");
            l.file("etc/group", "g\n").owner("etc/group", 0, 5);
            l.file("far", "far\n").owner("far", 70000, 70000);
        })
        .opt("uidmapping=:0:100000:65536,gidmapping=:0:100000:65536")
        .prepare();
    let seen = m.base.join("mapped");
    std::fs::create_dir(&seen).unwrap();
    let _idmapped = idmapped_bind(&m.lowers[0], &seen, "0 100000 65536");
    assert_eq!(
        owners(&seen.join("etc/passwd")),
        (100000, 100000),
        "the kernel's idmapped view"
    );
    let disk = std::mem::replace(&mut m.lowers[0], seen);
    m.mount_now();
    let check = |c: &Ctx| {
        assert_eq!(
            owners(&c.p("etc")),
            (100000, 100000),
            "etc: container root's, mapped once"
        );
        assert_eq!(owners(&c.p("etc/group")), (100000, 100005));
        assert_eq!(
            owners(&c.p("far")),
            (65534, 65534),
            "unmapped by the idmapped mount"
        );
    };
    m.run(move |c| {
        check(&c);
        // Container root writes into /etc, as runc does for /etc/hostname.
        let out = run_cmd(
            Command::new("setpriv")
                .args([
                    "--reuid=100000",
                    "--regid=100000",
                    "--clear-groups",
                    "sh",
                    "-c",
                ])
                .arg(format!(
                    "touch {0}/etc/hostname && echo more >> {0}/etc/passwd",
                    c.p("").display()
                )),
            CMD_TIMEOUT,
        );
        assert!(
            out.ok(),
            "container root could not write /etc: {}",
            out.describe()
        );
        assert_eq!(owners(&c.p("etc/hostname")), (100000, 100000));
        assert_eq!(
            owners(&c.u("etc/hostname")),
            (0, 0),
            "stored as the container's 0"
        );
        assert_eq!(
            owners(&c.u("etc/passwd")),
            (0, 0),
            "a copy-up stores the container's ids"
        );
        assert_eq!(owners(&c.u("etc")), (0, 0));
        assert_eq!(owners(&c.p("etc/passwd")), (100000, 100000));
        // Host root (podman making /etc/mtab) is outside the mapping.
        std::os::unix::fs::symlink("/proc/mounts", c.p("etc/mtab")).unwrap();
        assert_eq!(owners(&c.u("etc/mtab")), (65534, 65534));
        lchown(&c.p("etc/mtab"), 100000, 100000).unwrap();
        assert_eq!(owners(&c.u("etc/mtab")), (0, 0));
    });
    m.remount();
    m.run(move |c| {
        check(&c);
        assert_eq!(owners(&c.p("etc/hostname")), (100000, 100000));
        assert_eq!(owners(&c.p("etc/passwd")), (100000, 100000));
        assert_eq!(read(c.p("etc/passwd")), "root:x:0:0::/root:/bin/sh\nmore\n");
    });
    assert_eq!(
        owners(&disk.join("etc/passwd")),
        (0, 0),
        "the lower on disk is untouched"
    );
    assert_eq!(read(disk.join("etc/passwd")), "root:x:0:0::/root:/bin/sh\n");
}

#[test]
fn squash_options_show_every_entry_as_one_owner() {
    let m = layers().opt("squash_to_root").mount();
    m.run(|c| {
        for n in ["f0", "f1", "far", "d", ""] {
            assert_eq!(owners(&c.p(n)), (0, 0), "{n} under squash_to_root");
        }
    });
    drop(m);
    let m = layers()
        .opt("squash_to_root,squash_to_uid=123,squash_to_gid=456")
        .mount();
    m.run(|c| {
        for n in ["f0", "f1", "far", "d"] {
            assert_eq!(owners(&c.p(n)), (123, 456), "{n}: squash_to_uid/gid win");
        }
        // What is stored is what was given.
        write(c.p("new"), "x");
        assert_eq!(owners(&c.u("new")), (0, 0));
        assert_eq!(owners(&c.p("new")), (123, 456));
    });
}

#[test]
fn static_nlink_gives_directories_one_link() {
    let m = layers().mount();
    m.run(|c| assert_eq!(lstat(c.p("d")).nlink(), 4));
    drop(m);
    let m = layers().opt("static_nlink").mount();
    m.run(|c| {
        assert_eq!(lstat(c.p("d")).nlink(), 1);
        assert_eq!(lstat(c.p("")).nlink(), 1);
        assert_eq!(lstat(c.p("f0")).nlink(), 1);
        std::fs::hard_link(c.p("f0"), c.p("f0-link")).unwrap();
        assert_eq!(lstat(c.p("f0")).nlink(), 2, "files keep their real count");
    });
}

#[test]
fn noacl_refuses_posix_acls() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("f", "x\n")
                .xattr("f", "system.posix_acl_access", &acl_with_user(7));
        })
        .opt("noacl")
        .mount();
    m.run(|c| {
        assert_errno(
            lsetxattr(&c.p("f"), "system.posix_acl_access", &acl_with_user(8), 0),
            libc::EOPNOTSUPP,
            "setting an ACL under noacl",
        );
        assert_errno(
            lgetxattr(&c.p("f"), "system.posix_acl_access"),
            libc::EOPNOTSUPP,
            "reading the lower file's ACL under noacl",
        );
        let names = llistxattr(&c.p("f")).unwrap();
        assert!(
            !names.iter().any(|n| n.starts_with("system.posix_acl")),
            "ACLs listed under noacl: {names:?}"
        );
    });
}

fn daemon_threads(m: &Mount) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", m.daemon_pid()))
        .unwrap()
        .count()
}

#[test]
fn threaded_and_max_threads_set_the_request_threads() {
    let one = layers().opt("threaded=0").mount();
    one.run(|c| assert_eq!(read(c.p("f0")), "zero\n"));
    let six = layers().opt("max_threads=6").mount();
    six.run(|c| assert_eq!(read(c.p("f0")), "zero\n"));
    assert_eq!(
        daemon_threads(&six),
        daemon_threads(&one) + 5,
        "max_threads=6 against threaded=0"
    );
}

/// What an unprivileged user's mount inside its own user namespace does with the mapping (as
/// rootless podman runs its mount program): ids 0 and 1000 of the namespace swap places, as
/// keep-id swaps the user's id with root's, and ids above 1000 are outside the mapping.
const NS_SCRIPT: &str = r#"
set -eu
S="$1"; B="$2"; M="$B/mnt"
MAP=0:1000:1:1:1:999:1000:0:1
O="lowerdir=$B/lower,upperdir=$B/upper,workdir=$B/work,uidmapping=$MAP,gidmapping=$MAP"
echo "NSMAP $(awk '{printf "%s %s %s;", $1, $2, $3}' /proc/self/uid_map)"
"$S" mount -o "$O" "$M"
stat -c "SHOWN %n %u:%g" "$M/rootf" "$M/five" "$M/k1000" "$M/far"
echo more >> "$M/five"
echo made > "$M/made"
echo new > "$M/new"
chown 7:7 "$M/new"
if chown 2000:2000 "$M/rootf" 2>/dev/null; then echo "UNMAPPED-CHOWN ok"; else echo "UNMAPPED-CHOWN refused"; fi
stat -c "AFTER %n %u:%g" "$M/five" "$M/made" "$M/new" "$M/rootf"
"$S" umount "$M"
"$S" mount -o "$O" "$M"
stat -c "REMOUNTED %n %u:%g" "$M/rootf" "$M/five" "$M/made" "$M/new" "$M/k1000"
cat "$M/five"
"$S" umount "$M"
echo "DONE"
"#;

/// The test user's subordinate ids, in /etc/subuid and /etc/subgid for the test's life.
struct SubIds {
    added: Vec<(&'static str, String)>,
}

impl SubIds {
    fn ensure(user: &str, start: u32) -> SubIds {
        let mut added = Vec::new();
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            let line = format!("{user}:{start}:65536");
            if !text.lines().any(|l| l == line) {
                let mut t = text.clone();
                if !t.is_empty() && !t.ends_with('\n') {
                    t.push('\n');
                }
                t.push_str(&line);
                t.push('\n');
                std::fs::write(file, t).unwrap();
                added.push((file, line));
            }
        }
        SubIds { added }
    }
}

impl Drop for SubIds {
    fn drop(&mut self) {
        for (file, line) in &self.added {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            let kept: String = text
                .lines()
                .filter(|l| l != line)
                .map(|l| format!("{l}\n"))
                .collect();
            let _ = std::fs::write(file, kept);
        }
    }
}

/// Kills every process whose command line names `base` (a daemon left in a user namespace's
/// mount namespace, which no unmount from here can reach).
struct KillUnder(std::path::PathBuf);

impl Drop for KillUnder {
    fn drop(&mut self) {
        let needle = self.0.as_os_str().as_encoded_bytes().to_vec();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if cmd.windows(needle.len()).any(|w| w == needle.as_slice()) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

#[test]
fn an_unprivileged_user_namespace_mount_maps_owners_both_ways() {
    assert!(is_root(), "needs root to make the test user and its ids");
    let (uid, gid) = ensure_test_user();
    const SUB: u32 = 300000;
    let _subids = SubIds::ensure(TEST_USER, SUB);
    let tmp = tempfile::Builder::new()
        .prefix("strata-ft-userns.")
        .tempdir()
        .unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let _kill = KillUnder(base.clone());
    let lower = Layer::new(base.join("lower"));
    std::fs::create_dir(&lower.root).unwrap();
    // Owners on disk, as ids of the host: in the namespace, host `uid` is 0 and SUB+k-1 is k.
    lower
        .file("rootf", "root's\n")
        .owner("rootf", uid, gid)
        .file("five", "five\n")
        .owner("five", SUB + 4, SUB + 4)
        .file("k1000", "k\n")
        .owner("k1000", SUB + 999, SUB + 999)
        .file("far", "far\n")
        .owner("far", SUB + 2000, SUB + 2000)
        .owner("", uid, gid);
    for d in ["", "upper", "work", "mnt", "home"] {
        let p = base.join(d);
        std::fs::create_dir_all(&p).unwrap();
        lchown(&p, uid, gid).unwrap();
    }
    chmod(&base, 0o755).unwrap();
    let script = base.join("ns.sh");
    std::fs::write(&script, NS_SCRIPT).unwrap();
    let mut cmd = as_test_user(&[
        std::ffi::OsStr::new("unshare"),
        std::ffi::OsStr::new("--map-root-user"),
        std::ffi::OsStr::new(&format!("--map-users={SUB},1,65536")),
        std::ffi::OsStr::new(&format!("--map-groups={SUB},1,65536")),
        std::ffi::OsStr::new("--mount"),
        std::ffi::OsStr::new("/bin/sh"),
        script.as_os_str(),
        strata_bin().as_os_str(),
        base.as_os_str(),
    ]);
    cmd.env_remove("RUST_LOG")
        .env("HOME", base.join("home"))
        .env_remove("XDG_RUNTIME_DIR");
    let out = run_cmd(&mut cmd, std::time::Duration::from_secs(120));
    assert!(
        out.ok() && out.stdout.contains("DONE"),
        "the script in the user namespace failed:\n{}",
        out.describe()
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    let has = |l: &str| assert!(lines.contains(&l), "missing {l:?} in:\n{}", out.describe());
    has(&format!("NSMAP 0 {uid} 1;1 {SUB} 65536;"));
    // Namespace id 0 is shown as 1000 and 1000 as 0; 2001 is outside the mapping.
    has(&format!("SHOWN {}/mnt/rootf 1000:1000", base.display()));
    has(&format!("SHOWN {}/mnt/five 5:5", base.display()));
    has(&format!("SHOWN {}/mnt/k1000 0:0", base.display()));
    has(&format!("SHOWN {}/mnt/far 65534:65534", base.display()));
    has("UNMAPPED-CHOWN refused");
    for when in ["AFTER", "REMOUNTED"] {
        has(&format!("{when} {}/mnt/five 5:5", base.display()));
        // Made by the namespace's root (shown 0): stored through the inverse, as 1000.
        has(&format!("{when} {}/mnt/made 0:0", base.display()));
        has(&format!("{when} {}/mnt/new 7:7", base.display()));
        has(&format!("{when} {}/mnt/rootf 1000:1000", base.display()));
    }
    has(&format!("REMOUNTED {}/mnt/k1000 0:0", base.display()));
    has("more");
    // On the host: the inverse of the mapping, then the namespace's own map.
    let host = |rel: &str| owners(&base.join("upper").join(rel));
    assert_eq!(host("five"), (SUB + 4, SUB + 4), "copy-up keeps the owner");
    assert_eq!(host("made"), (SUB + 999, SUB + 999), "namespace id 1000");
    assert_eq!(host("new"), (SUB + 6, SUB + 6), "chown 7 = namespace id 7");
    assert!(
        !base.join("upper/rootf").exists(),
        "a refused chown copied up"
    );
    assert_eq!(owners(&lower.root.join("five")), (SUB + 4, SUB + 4));
}
