//! `strata image`: import from every SOURCE kind into the shared layer store, verified against
//! the digests umoci and skopeo write, and the ls/inspect/history/tag/rm/prune verbs. Images are
//! built here without network from busybox-static with umoci, skopeo and tar; `docker` checks
//! both directions against a private Docker 20.10 daemon.

mod common;
#[path = "images/docker.rs"]
mod docker;
#[path = "images/fixture.rs"]
mod fixture;
#[path = "images/save.rs"]
mod save;
#[path = "images/verbs.rs"]
mod verbs;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use common::*;
use fixture::*;

#[test]
fn oci_layout_keeps_owners_modes_xattrs_links_and_devices() {
    timed("oci import", || {
        let mut fx = Fx::new();
        fx.umoci_images();
        let id = fx.import(&["oci:base", "busybox:1"]);
        let cfg = fx.oci_config("base");
        let diffs = diff_ids(&cfg);
        assert_eq!(diffs.len(), 1);
        assert_eq!(
            fx.layer_dirs(),
            vec![diffs[0].trim_start_matches("sha256:").to_string()]
        );
        let l = fx.layer(&diffs[0]);
        let motd = lstat(l.join("etc/motd"));
        assert_eq!(
            (motd.uid(), motd.gid(), motd.mode() & 0o7777),
            (1000, 1001, 0o640)
        );
        assert_eq!(lgetxattr(&l.join("etc/motd"), "user.test").unwrap(), b"42");
        assert_eq!(lstat(l.join("usr/bin/suid")).mode() & 0o7777, 0o4755);
        let (a, b) = (lstat(l.join("data/a")), lstat(l.join("data/b")));
        assert_eq!(
            (a.ino(), a.nlink()),
            (b.ino(), 2),
            "data/b is a hard link of data/a"
        );
        assert_eq!(readlink(l.join("bin/sh")), "busybox");
        let dev = lstat(l.join("dev/null"));
        assert_eq!((kind(&dev), rdev_of(&dev)), ('c', (1, 3)));
        assert_eq!(kind(&lstat(l.join("run/fifo"))), 'p');
        assert_eq!(lstat(l.join("etc/passwd")).mtime(), 1_600_000_000);
        assert_eq!(lstat(l.join("empty")).mode() & 0o7777, 0o1777);
        // The id is the config's digest, and the config is kept for run.
        let i = fx.inspect("busybox:1");
        assert_eq!(i["Id"], id);
        assert_eq!(i["RootFS"]["Layers"], serde_json::json!(diffs));
        assert_eq!(i["Config"]["Cmd"], serde_json::json!(["sh"]));
        assert_eq!(i["Config"], cfg["config"]);
        // Mounted, the image reads as umoci unpacks it.
        let mnt = fx.mount_layers(vec![l]);
        let (want, got) = (tree(&fx.base().join("bb/rootfs")), tree(&mnt));
        let strip = |mut t: std::collections::BTreeMap<String, Entry>| {
            t.remove(".");
            t
        };
        assert_same_tree(
            &strip(want),
            &strip(got),
            "umoci unpack",
            "strata mount of the layer",
        );
    });
}

#[test]
fn two_images_share_their_base_layer_and_whiteouts_stay_files() {
    timed("shared base", || {
        let mut fx = Fx::new();
        fx.umoci_images();
        fx.import(&["oci:base", "base"]);
        let before = fx.layer_dirs();
        fx.import(&["oci:app", "app"]);
        let diffs = diff_ids(&fx.oci_config("app"));
        assert_eq!(diffs.len(), 2);
        assert_eq!(
            diff_ids(&fx.oci_config("base"))[0],
            diffs[0],
            "app is base plus a layer"
        );
        let after = fx.layer_dirs();
        assert_eq!(after.len(), 2, "the base layer is stored once: {after:?}");
        assert!(before.iter().all(|b| after.contains(b)));
        let top = fx.layer(&diffs[1]);
        let wh = top.join("old/.wh.x");
        assert_eq!(
            kind(&lstat(&wh)),
            'f',
            "the whiteout is kept as the file it is"
        );
        assert_eq!(read(top.join("etc/version")), "2\n");
        // Importing again costs only metadata: no layer is unpacked.
        fx.import(&["oci:app", "app:again"]);
        assert_eq!(fx.layer_dirs(), after);
        assert!(fx.tmp_left().is_empty(), "{:?}", fx.tmp_left());
        // The union reads the whiteout: through a mount old/x is gone, keep/y is there.
        let layers: Vec<PathBuf> = diffs.iter().rev().map(|d| fx.layer(d)).collect();
        let mnt = fx.mount_layers(layers);
        assert_enoent(mnt.join("old/x"));
        assert_eq!(names(mnt.join("old")), set(&[]));
        assert_eq!(read(mnt.join("keep/y")), "y\n");
        assert_eq!(read(mnt.join("etc/version")), "2\n");
        assert_errno(fs::write(mnt.join("etc/new"), "x"), libc::EROFS, "write");
    });
}

#[test]
fn docker_archives_plain_gzip_and_zstd_import_with_their_tags() {
    timed("docker-archive", || {
        let fx = Fx::new();
        fx.umoci_images();
        fx.tool(
            "skopeo",
            &["copy", "oci:oci:app", "docker-archive:app.tar:app:v1"],
        );
        let id = fx.import(&["app.tar"]);
        let ls = fx.ok(&["image", "ls"]);
        assert!(
            ls.lines()
                .any(|l| l.starts_with("app ") && l.contains(" v1 ")),
            "{ls}"
        );
        let i = fx.inspect("app:v1");
        assert_eq!(i["Id"], id);
        assert_eq!(
            i["RootFS"]["Layers"],
            serde_json::json!(diff_ids(&fx.oci_config("app")))
        );
        assert_eq!(fx.layer_dirs().len(), 2);
        fx.tool("gzip", &["-k", "app.tar"]);
        fx.tool("zstd", &["-q", "app.tar"]);
        fs::remove_dir_all(fx.root()).unwrap();
        assert_eq!(fx.import(&["app.tar.gz", "gz"]), id);
        fs::remove_dir_all(fx.root()).unwrap();
        assert_eq!(fx.import(&["app.tar.zst", "zst"]), id);
        assert_eq!(fx.layer_dirs().len(), 2);
        let ls = fx.ok(&["image", "ls"]);
        assert!(ls.lines().any(|l| l.starts_with("zst ")), "{ls}");
        assert!(
            !ls.contains("app "),
            "NAME replaces the archive's tags: {ls}"
        );
    });
}

#[test]
fn rootfs_tars_and_directories_import_as_one_layer() {
    timed("rootfs", || {
        let fx = Fx::new();
        let r = fx.base().join("rootfs");
        fs::create_dir(&r).unwrap();
        fx.populate(&r);
        chmod(&r, 0o750).unwrap();
        fx.tool(
            "tar",
            &[
                "--xattrs",
                "--xattrs-include=*",
                "-C",
                "rootfs",
                "-cf",
                "r.tar",
                ".",
            ],
        );
        fx.tool("tar", &["-C", "rootfs", "-czf", "r.tgz", "."]);
        fx.tool("zstd", &["-q", "r.tar", "-o", "r.tar.zst"]);
        fx.import(&["r.tar", "r:tar"]);
        fx.import(&["r.tgz", "r:tgz"]);
        fx.import(&["r.tar.zst", "r:zst"]);
        assert_eq!(
            fx.layer_dirs().len(),
            2,
            "tar and tar.zst are one layer; tgz lacks xattrs"
        );
        fx.import(&["rootfs", "r:dir"]);
        assert_eq!(fx.layer_dirs().len(), 3);
        for name in ["r:tar", "r:dir"] {
            let i = fx.inspect(name);
            let layers = i["RootFS"]["Layers"].as_array().unwrap().clone();
            assert_eq!(layers.len(), 1);
            let l = fx.layer(layers[0].as_str().unwrap());
            assert_eq!(
                lstat(&l).mode() & 0o7777,
                0o750,
                "{name}: the root keeps its mode"
            );
            let motd = lstat(l.join("etc/motd"));
            assert_eq!(
                (motd.uid(), motd.gid(), motd.mode() & 0o7777),
                (1000, 1001, 0o640),
                "{name}"
            );
            assert_eq!(
                lgetxattr(&l.join("etc/motd"), "user.test").unwrap(),
                b"42",
                "{name}"
            );
            assert_eq!(
                lstat(l.join("data/a")).ino(),
                lstat(l.join("data/b")).ino(),
                "{name}"
            );
            assert_eq!(rdev_of(&lstat(l.join("dev/null"))), (1, 3), "{name}");
            assert_eq!(readlink(l.join("bin/sh")), "busybox", "{name}");
        }
        let h = fx.ok(&["image", "history", "r:dir"]);
        assert_eq!(h.lines().count(), 2, "{h}");
        assert!(
            h.lines().nth(1).unwrap().contains("strata image import"),
            "{h}"
        );
        // An opaque marker stays the file it is, and the union reads it over the base.
        let op = fx.base().join("op");
        Layer::new(&op)
            .file("keep/.wh..wh..opq", "")
            .file("keep/new", "n\n");
        fx.tool("tar", &["-C", "op", "-cf", "op.tar", "."]);
        fx.import(&["op.tar", "op"]);
        let layer_of = |n: &str| {
            fx.inspect(n)["RootFS"]["Layers"][0]
                .as_str()
                .unwrap()
                .to_string()
        };
        let (top, base) = (fx.layer(&layer_of("op")), fx.layer(&layer_of("r:tar")));
        assert_eq!(kind(&lstat(top.join("keep/.wh..wh..opq"))), 'f');
        let mut fx = fx;
        let mnt = fx.mount_layers(vec![top, base]);
        assert_eq!(names(mnt.join("keep")), set(&["new"]));
        assert_eq!(read(mnt.join("etc/motd")), "hello\n");
    });
}

#[test]
fn a_corrupt_blob_or_an_escaping_entry_is_refused_leaving_nothing() {
    timed("bad input", || {
        let fx = Fx::new();
        fx.umoci_images();
        let blob = fx.oci_layer_blobs("base")[0].clone();
        let p = fx
            .base()
            .join("oci/blobs/sha256")
            .join(blob.trim_start_matches("sha256:"));
        let mut data = fs::read(&p).unwrap();
        let n = data.len();
        data[n - 20] ^= 0xff; // in the gzip trailer's neighbourhood: the tar itself may survive
        fs::write(&p, &data).unwrap();
        let e = fx.fails(&["image", "import", "oci:base", "bad"]);
        assert!(
            e.contains(&blob)
                && (e.contains("mismatch") || e.contains("corrupt") || e.contains("invalid")),
            "{e}"
        );
        assert!(fx.layer_dirs().is_empty(), "{:?}", fx.layer_dirs());
        assert!(fx.tmp_left().is_empty(), "{:?}", fx.tmp_left());
        assert_eq!(fx.ok(&["image", "ls", "-q"]), "");
        for (name, bytes) in [
            ("dotdot.tar", evil_tar("../escape", b'0', "")),
            ("abs.tar", evil_tar("/etc/escape", b'0', "")),
            ("link.tar", evil_tar("x", b'1', "../../etc/passwd")),
        ] {
            fs::write(fx.base().join(name), bytes).unwrap();
            let e = fx.fails(&["image", "import", name, "evil"]);
            assert!(
                e.contains("layer entry") && e.contains("leave the layer"),
                "{name}: {e}"
            );
        }
        // A symlink in the layer is never written through.
        let mut through = evil_tar_entry("d", b'2', "/tmp");
        through.extend(evil_tar_entry("d/file", b'0', ""));
        through.extend([0u8; 1024]);
        fs::write(fx.base().join("through.tar"), through).unwrap();
        let e = fx.fails(&["image", "import", "through.tar", "evil"]);
        assert!(e.contains("\"d/file\"") && e.contains("symlink"), "{e}");
        assert!(fx.layer_dirs().is_empty() && fx.tmp_left().is_empty());
        let e = fx.fails(&["image", "import", "oci:base", "Bad-Name"]);
        assert!(e.contains("invalid reference format"), "{e}");
        let e = fx.fails(&["image", "import", "oci:nosuch", "x"]);
        assert!(e.contains("no manifest named \"nosuch\""), "{e}");
    });
}

/// One tar header block for `name` (type `kind`, link target `link`), written by hand so that
/// names a careful tar writer refuses can be made; no data.
fn evil_tar_entry(name: &str, kind: u8, link: &str) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(b"00000000000\0");
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h.to_vec()
}

fn evil_tar(name: &str, kind: u8, link: &str) -> Vec<u8> {
    let mut v = evil_tar_entry(name, kind, link);
    v.extend([0u8; 1024]);
    v
}

#[test]
fn a_killed_import_leaves_no_layer_or_image_behind() {
    timed("kill -9", || {
        let fx = Fx::new();
        let r = fx.base().join("rootfs");
        fs::create_dir(&r).unwrap();
        fx.populate(&r);
        let big = fs::File::create(r.join("big")).unwrap();
        big.set_len(256 << 20).unwrap();
        drop(big);
        fx.tool("tar", &["-C", "rootfs", "-cf", "big.tar", "."]);
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut child = Kill(
            std::process::Command::new(strata_bin())
                .args(["image", "import", "big.tar", "big"])
                .env("STRATA_ROOT", fx.root())
                .current_dir(fx.base())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        // Kill it while the layer is being written.
        let tmp = fx.root().join("layers/tmp");
        let writing = wait_until(std::time::Duration::from_secs(30), || {
            // The layer's directory, beside the record of its tar.
            fs::read_dir(&tmp)
                .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.path().join("big").exists())))
        });
        assert!(writing, "the import never started writing its layer");
        child.0.kill().unwrap();
        let status = child.0.wait().unwrap();
        assert!(
            !status.success(),
            "the import finished before it was killed"
        );
        assert!(fx.layer_dirs().is_empty(), "{:?}", fx.layer_dirs());
        assert_eq!(fx.ok(&["image", "ls", "-q"]), "");
        // The next import removes what the killed one left.
        fx.import(&["rootfs", "small"]);
        assert!(fx.tmp_left().is_empty(), "{:?}", fx.tmp_left());
        assert_eq!(fx.layer_dirs().len(), 1);
    });
}

#[test]
fn a_docker_archive_of_several_images_is_picked_from_by_name() {
    timed("docker-archive of two images", || {
        let fx = Fx::new();
        fx.umoci_images();
        fx.tool(
            "skopeo",
            &["copy", "oci:oci:base", "docker-archive:base.tar:base:v1"],
        );
        fx.tool(
            "skopeo",
            &["copy", "oci:oci:app", "docker-archive:app.tar:app:v1"],
        );
        // One archive holding both, as `docker save base:v1 app:v1` writes it.
        let mut manifest = Vec::new();
        let mut out = tar::Builder::new(fs::File::create(fx.base().join("both.tar")).unwrap());
        let mut seen = std::collections::BTreeSet::new();
        for a in ["base.tar", "app.tar"] {
            let mut ar = tar::Archive::new(fs::File::open(fx.base().join(a)).unwrap());
            for e in ar.entries().unwrap() {
                let mut e = e.unwrap();
                let p = e.path().unwrap().into_owned();
                if p == std::path::Path::new("manifest.json") {
                    let v: serde_json::Value = serde_json::from_reader(&mut e).unwrap();
                    manifest.extend(v.as_array().unwrap().iter().cloned());
                } else if p != std::path::Path::new("repositories") && seen.insert(p.clone()) {
                    let mut h = e.header().clone();
                    out.append_data(&mut h, &p, &mut e).unwrap();
                }
            }
        }
        let m = serde_json::to_vec(&manifest).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(m.len() as u64);
        h.set_mode(0o644);
        out.append_data(&mut h, "manifest.json", &m[..]).unwrap();
        out.into_inner().unwrap();
        let e = fx.fails(&["image", "import", "both.tar"]);
        assert!(e.contains("holds 2 images") && e.contains("app:v1"), "{e}");
        let e = fx.fails(&["image", "import", "both.tar", "nosuch:v1"]);
        assert!(e.contains("holds no image nosuch:v1"), "{e}");
        let app = fx.import(&["both.tar", "app:v1"]);
        assert_eq!(fx.layer_dirs().len(), 2);
        let base = fx.import(&["both.tar", "base:v1"]);
        assert_ne!(app, base);
        assert_eq!(
            fx.layer_dirs().len(),
            2,
            "base's only layer was there already"
        );
        assert_eq!(
            fx.inspect("base:v1")["RootFS"]["Layers"],
            serde_json::json!(diff_ids(&fx.oci_config("base")))
        );
    });
}

#[test]
fn concurrent_imports_of_one_image_store_its_layers_once() {
    timed("concurrent imports", || {
        let fx = Fx::new();
        fx.umoci_images();
        let spawn = |name: &str| {
            std::process::Command::new(strata_bin())
                .args(["image", "import", "oci:app", name])
                .env("STRATA_ROOT", fx.root())
                .current_dir(fx.base())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let children: Vec<_> = (0..4).map(|i| spawn(&format!("app:{i}"))).collect();
        let ids: Vec<String> = children
            .into_iter()
            .map(|c| {
                let o = c.wait_with_output().unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                String::from_utf8(o.stdout).unwrap()
            })
            .collect();
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
        assert_eq!(fx.layer_dirs().len(), 2);
        assert!(fx.tmp_left().is_empty(), "{:?}", fx.tmp_left());
        let t = fx.ok(&["image", "ls"]);
        assert_eq!(t.lines().count(), 5, "every tag is kept:\n{t}");
    });
}
