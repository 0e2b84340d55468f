//! Containers from an image: an OCI layout made with umoci from the busybox rootfs (two
//! layers, a config with Cmd, Env, WorkingDir and User), imported with `strata image import`,
//! and run: the layers are the union's lowers, the config gives the defaults, writes stay in
//! the container, and the image is kept while a container uses it.

mod common;
#[path = "containers/fixture.rs"]
mod fixture;
use common::*;
use fixture::*;

use std::fs;
use std::process::Command;

fn umoci(f: &Fx, args: &[&str]) {
    run_ok(Command::new("umoci").current_dir(&f.base).args(args));
}

/// `app:1`: the rootfs as one layer, then a layer adding /etc/version; the config runs a
/// script that shows what it was given.
fn image(f: &Fx) {
    umoci(f, &["init", "--layout", "oci"]);
    umoci(f, &["new", "--image", "oci:app"]);
    umoci(f, &["unpack", "--image", "oci:app", "bundle"]);
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(f.rootfs.join("."))
            .arg(f.base.join("bundle/rootfs")),
    );
    umoci(f, &["repack", "--image", "oci:app", "bundle"]);
    umoci(f, &["unpack", "--image", "oci:app", "bundle2"]);
    fs::write(f.base.join("bundle2/rootfs/etc/version"), "2\n").unwrap();
    umoci(f, &["repack", "--image", "oci:app", "bundle2"]);
    umoci(
        f,
        &[
            "config",
            "--image",
            "oci:app",
            "--config.cmd",
            "sh",
            "--config.cmd",
            "-c",
            "--config.cmd",
            "echo $A $B; pwd; id -u",
            "--config.env",
            "A=from-image",
            "--config.env",
            "B=image",
            "--config.workingdir",
            "/srv",
            "--config.user",
            "1000:1000",
            "--config.volume",
            "/vol",
        ],
    );
    let o = f.verb(&[
        "image",
        "import",
        f.base.join("oci:app").to_str().unwrap(),
        "app:1",
    ]);
    assert!(o.ok(), "{}", o.describe());
}

#[test]
fn an_image_runs_with_its_layers_and_config() {
    let f = fx();
    image(&f);
    // The image's Cmd, Env, WorkingDir and User; -e overrides a key.
    let o = f.run(&["--rm", "-e", "B=cli"], &[]);
    let o2 = f.run_raw(&["--rm", "-e", "B=cli", "app:1"]);
    assert!(!o.ok(), "a rootfs has no Cmd: {}", o.describe());
    assert!(o2.ok(), "{}", o2.describe());
    assert_eq!(o2.stdout, "from-image cli\n/srv\n1000\n");
    // Both layers are there; a command replaces Cmd; --entrypoint and -u as Docker's.
    let o = f.run_raw(&["--rm", "app:1", "cat", "/etc/version", "/etc/motd"]);
    assert_eq!(o.stdout, "2\nfrom the image\n", "{}", o.describe());
    let o = f.run_raw(&["--rm", "-u", "0", "--entrypoint", "id", "app:1", "-u"]);
    assert_eq!(o.stdout, "0\n", "{}", o.describe());
    // Writes stay in the container's upper; the layer store is untouched.
    let layers = f.root.join("layers");
    let before = host_snapshot(&layers);
    let o = f.run_raw(&[
        "--name",
        "writer",
        "-u",
        "0",
        "app:1",
        "sh",
        "-c",
        "echo new > /etc/version; rm /etc/motd",
    ]);
    assert!(o.ok(), "{}", o.describe());
    assert_snapshot_unchanged(&before, &layers, "the layer store");
    let id = f.only_id();
    let upper = f.containers().join(&id).join("upper");
    assert_eq!(read(upper.join("etc/version")), "new\n");
    assert_upper_whiteout(&upper, "etc/motd");
    let v: serde_json::Value =
        serde_json::from_str(&f.verb(&["inspect", "writer"]).stdout).unwrap();
    assert!(v[0]["Image"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(v[0]["Config"]["Image"], "app:1");
    // The image's VOLUME gets an anonymous volume.
    let m = &v[0]["Mounts"][0];
    assert_eq!(
        (m["Type"].as_str(), m["Destination"].as_str()),
        (Some("volume"), Some("/vol"))
    );
    assert_eq!(m["Name"].as_str().unwrap().len(), 64);
    let lower = v[0]["GraphDriver"]["Data"]["LowerDir"].as_str().unwrap();
    assert_eq!(lower.split(':').count(), 2, "{lower}");
    assert!(lower
        .split(':')
        .all(|l| l.starts_with(layers.to_str().unwrap())));
    // The image stays while a container uses it.
    let o = f.verb(&["image", "rm", "app:1"]);
    assert!(!o.ok(), "{}", o.describe());
    assert!(
        o.stderr.contains("is using its referenced image"),
        "{}",
        o.describe()
    );
    assert!(f.verb(&["rm", "-v", "writer"]).ok());
    assert_eq!(f.verb(&["volume", "ls", "-q"]).stdout, "");
    assert!(f.verb(&["image", "rm", "app:1"]).ok());
    let o = f.run_raw(&["--rm", "app:1"]);
    assert_eq!(o.status.code(), Some(125));
    assert_eq!(o.stderr, "strata: No such image: app:1\n");
}
