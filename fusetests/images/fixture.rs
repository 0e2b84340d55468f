//! Images for the image tests, built without network: busybox-static in an OCI layout made with
//! umoci, converted with skopeo, and plain tars.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::*;

/// A fixture (its own temp dir and state root) that runs `strata image ...` and mounts layers
/// read-only; everything goes with it, mounts included, also on panic.
pub struct Fx {
    pub m: Mount,
}

impl Fx {
    pub fn new() -> Fx {
        Fx {
            m: Builder::new(1).read_only().prepare(),
        }
    }

    /// The same, its directories owned by the unprivileged test user.
    pub fn rootless() -> Fx {
        Fx {
            m: Builder::new(1).read_only().owned_by_test_user().prepare(),
        }
    }

    pub fn base(&self) -> &Path {
        &self.m.base
    }

    pub fn root(&self) -> &Path {
        &self.m.root
    }

    pub fn strata(&self, args: &[&str]) -> CmdOut {
        run_cmd(
            Command::new(strata_bin())
                .args(args)
                .env("STRATA_ROOT", self.root())
                .current_dir(self.base()),
            CMD_TIMEOUT,
        )
    }

    /// A strata command that must succeed: its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.strata(args);
        assert!(o.ok(), "strata {args:?} failed: {}", o.describe());
        o.stdout
    }

    /// A strata command that must fail with one line on stderr: that line.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.strata(args);
        assert!(!o.ok(), "strata {args:?} succeeded: {}", o.describe());
        let lines: Vec<&str> = o.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "strata {args:?}: not one line: {}",
            o.describe()
        );
        lines[0].to_string()
    }

    /// `image import` that must succeed and print only the image id.
    pub fn import(&self, args: &[&str]) -> String {
        let mut a = vec!["image", "import"];
        a.extend_from_slice(args);
        let out = self.ok(&a);
        let id = out.trim_end().to_string();
        assert!(
            id.starts_with("sha256:") && id.len() == 71 && !id.contains('\n'),
            "import printed {out:?}, not just an image id"
        );
        id
    }

    pub fn tool(&self, prog: &str, args: &[&str]) -> String {
        run_ok(Command::new(prog).args(args).current_dir(self.base())).stdout
    }

    /// Layer directories in the store.
    pub fn layer_dirs(&self) -> Vec<String> {
        let d = self.root().join("layers/sha256");
        let mut v: Vec<String> = fs::read_dir(&d)
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn layer(&self, diff_id: &str) -> PathBuf {
        self.root()
            .join("layers/sha256")
            .join(diff_id.trim_start_matches("sha256:"))
    }

    /// Files left in the store's scratch directory.
    pub fn tmp_left(&self) -> Vec<String> {
        fs::read_dir(self.root().join("layers/tmp"))
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["image", "inspect", name])).unwrap();
        v[0].clone()
    }

    /// Mount the layers (top-most first) read-only at `mnt`.
    pub fn mount_layers(&mut self, layers: Vec<PathBuf>) -> PathBuf {
        self.m.lowers = layers;
        self.m.mount_now();
        self.m.mnt.clone()
    }

    /// The busybox rootfs every image starts from, with one of each kind of entry.
    pub fn populate(&self, r: &Path) {
        let l = Layer::new(r);
        fs::create_dir_all(r.join("bin")).unwrap();
        fs::copy("/bin/busybox", r.join("bin/busybox")).expect("busybox-static: /bin/busybox");
        symlink("busybox", r.join("bin/sh")).unwrap();
        l.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
            .file_mode("etc/motd", "hello\n", 0o640)
            .owner("etc/motd", 1000, 1001)
            .xattr("etc/motd", "user.test", b"42")
            .file_mode("usr/bin/suid", "#!/bin/sh\n", 0o4755)
            .file("data/a", "shared\n")
            .hardlink("data/a", "data/b")
            .chardev("dev/null", 1, 3)
            .fifo("run/fifo")
            .file("old/x", "to be deleted\n")
            .file("keep/y", "y\n")
            .dir("empty")
            .mode("empty", 0o1777)
            .times("etc/passwd", 1_600_000_000, 0);
    }

    /// An OCI layout `oci` with `base` (one layer, Cmd sh, Env A=1) and `app` (base plus a
    /// layer that deletes old/x and adds etc/version), made by umoci.
    pub fn umoci_images(&self) {
        self.tool("umoci", &["init", "--layout", "oci"]);
        self.tool("umoci", &["new", "--image", "oci:base"]);
        self.tool("umoci", &["unpack", "--image", "oci:base", "bb"]);
        self.populate(&self.base().join("bb/rootfs"));
        self.tool("umoci", &["repack", "--image", "oci:base", "bb"]);
        self.tool(
            "umoci",
            &[
                "config",
                "--image",
                "oci:base",
                "--config.cmd",
                "sh",
                "--config.env",
                "A=1",
                "--config.volume",
                "/data",
                "--config.label",
                "k=v",
            ],
        );
        self.tool("umoci", &["tag", "--image", "oci:base", "app"]);
        self.tool("umoci", &["unpack", "--image", "oci:app", "ab"]);
        let r = self.base().join("ab/rootfs");
        fs::remove_file(r.join("old/x")).unwrap();
        fs::write(r.join("etc/version"), "2\n").unwrap();
        self.tool("umoci", &["repack", "--image", "oci:app", "ab"]);
    }

    /// The config of `oci:REF` as the layout holds it.
    pub fn oci_config(&self, r: &str) -> serde_json::Value {
        let blob = |d: &str| {
            let p = self
                .base()
                .join("oci/blobs/sha256")
                .join(d.trim_start_matches("sha256:"));
            serde_json::from_slice::<serde_json::Value>(&fs::read(p).unwrap()).unwrap()
        };
        let index = blob_json(&self.base().join("oci/index.json"));
        let desc = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == r)
            .unwrap_or_else(|| panic!("no {r} in {index}"))
            .clone();
        let manifest = blob(desc["digest"].as_str().unwrap());
        blob(manifest["config"]["digest"].as_str().unwrap())
    }

    /// The layer blob digests of `oci:REF`.
    pub fn oci_layer_blobs(&self, r: &str) -> Vec<String> {
        let index = blob_json(&self.base().join("oci/index.json"));
        let desc = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == r)
            .unwrap()
            .clone();
        let d = desc["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string();
        let manifest = blob_json(&self.base().join("oci/blobs/sha256").join(d));
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    }
}

pub fn blob_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

pub fn diff_ids(config: &serde_json::Value) -> Vec<String> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

/// Run `f` with a time limit (a hung import or mount fails the test).
pub fn timed(what: &str, f: impl FnOnce() + Send + 'static) {
    with_timeout(std::time::Duration::from_secs(240), what, f)
}
