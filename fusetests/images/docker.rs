//! Docker 20.10 (Debian's docker.io) as the reference: it loads and runs what `image save
//! --format docker-archive` writes, and `image import` reads what it builds and saves, with the
//! same layer diff ids, the same config and its whiteouts applied. Each test starts a private
//! dockerd of its own (its own data and exec roots, socket and pid file under a temporary
//! directory, no bridge and no iptables), never the host's; it goes with the test, also on
//! panic, and a dockerd that cannot start fails the test.

use std::fs::{self, File};
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::common::*;
use super::fixture::*;

const DOCKERD: &str = "/usr/sbin/dockerd";
/// Debian's client, matching its daemon (another `docker` may come first on PATH).
const DOCKER: &str = "/usr/bin/docker";
const DOCKER_TIMEOUT: Duration = Duration::from_secs(120);

/// A private dockerd. Dropped, it removes its containers, stops (or kills) the daemon and
/// every process started under its directories, unmounts what it mounted and removes them.
pub struct Dockerd {
    child: Child,
    dir: PathBuf,
    sock: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Dockerd {
    pub fn start() -> Dockerd {
        assert!(
            Path::new(DOCKERD).is_file() && Path::new(DOCKER).is_file(),
            "{DOCKERD} or {DOCKER} is missing: install docker.io (source scripts/deps; strata_deps)"
        );
        // Short: the daemon's and containerd's unix sockets live below it.
        let tmp = tempfile::Builder::new()
            .prefix("strata-dk.")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        let sock = dir.join("docker.sock");
        let log = dir.join("dockerd.log");
        let child = Command::new(DOCKERD)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .stdin(Stdio::null())
            .stdout(File::create(&log).unwrap())
            .stderr(File::create(&log).unwrap())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {DOCKERD}: {e}"));
        let mut d = Dockerd {
            child,
            dir,
            sock,
            _tmp: tmp,
        };
        let up = wait_until(Duration::from_secs(60), || {
            matches!(d.child.try_wait(), Ok(None))
                && d.sock.exists()
                && try_run_cmd(&mut d.cmd(&["version"]), Duration::from_secs(10))
                    .is_ok_and(|o| o.ok())
        });
        if !up {
            let status = d.child.try_wait().ok().flatten();
            panic!(
                "the private dockerd did not start (exit: {status:?}); its log:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        d
    }

    /// `docker ARGS` against this daemon, with a client config of its own.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER);
        c.env("DOCKER_CONFIG", self.dir.join("client"))
            .env_remove("DOCKER_HOST")
            .env("DOCKER_BUILDKIT", "0")
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args);
        c
    }

    /// A docker command that must succeed: its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = run_cmd(&mut self.cmd(args), DOCKER_TIMEOUT);
        assert!(o.ok(), "docker {args:?} failed: {}", o.describe());
        o.stdout
    }

    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["image", "inspect", name])).unwrap();
        v[0].clone()
    }

    /// Pids (other than ours) whose command line names this daemon's directory: the daemon,
    /// its containerd, the shims and the containers' processes.
    fn pids(&self) -> Vec<i32> {
        let me = std::process::id() as i32;
        let want = self.dir.to_string_lossy().into_owned();
        let mut v = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
            if pid != me && String::from_utf8_lossy(&cmd).contains(&want) {
                v.push(pid);
            }
        }
        v
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            if let Ok(o) = try_run_cmd(&mut self.cmd(&["ps", "-aq"]), Duration::from_secs(20)) {
                let ids: Vec<&str> = o.stdout.split_whitespace().collect();
                if !ids.is_empty() {
                    let mut a = vec!["rm", "-f"];
                    a.extend(ids);
                    let _ = try_run_cmd(&mut self.cmd(&a), Duration::from_secs(30));
                }
            }
            let pid = self.child.id() as i32;
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let child = &mut self.child;
            if !wait_until(Duration::from_secs(20), || {
                matches!(child.try_wait(), Ok(Some(_)))
            }) {
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                let _ = self.child.wait();
            }
        }
        // containerd and the shims leave the daemon's process group: found by their paths.
        wait_until(Duration::from_secs(10), || {
            let left = self.pids();
            for p in &left {
                unsafe { libc::kill(*p, libc::SIGKILL) };
            }
            left.is_empty()
        });
        // overlay2 and netns mounts under the data and exec roots; the TempDir goes after.
        drop(UnmountGuard(self.dir.clone()));
    }
}

/// A busybox-static root filesystem at `r`, every applet linked, and /etc/doomed, which a
/// later layer deletes.
fn busybox_rootfs(r: &Path) {
    let bin = r.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static: /bin/busybox");
    let list = run_ok(Command::new("/bin/busybox").arg("--list")).stdout;
    for a in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        symlink("busybox", bin.join(a)).unwrap();
    }
    for d in ["etc", "tmp", "proc", "sys", "dev"] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(r.join("etc/doomed"), "deleted by a later layer\n").unwrap();
}

fn strs(v: &[&str]) -> serde_json::Value {
    serde_json::json!(v)
}

#[test]
fn docker_loads_and_runs_a_saved_docker_archive() {
    timed("docker load of image save", || {
        let fx = Fx::new();
        let dk = Dockerd::start();
        // Two layers made by umoci: busybox with /work/note, then one that deletes
        // /etc/doomed (a whiteout Docker must apply), and a config Docker must run by.
        fx.tool("umoci", &["init", "--layout", "oci"]);
        fx.tool("umoci", &["new", "--image", "oci:app"]);
        fx.tool("umoci", &["unpack", "--image", "oci:app", "ub"]);
        let r = fx.base().join("ub/rootfs");
        busybox_rootfs(&r);
        fs::create_dir_all(r.join("work")).unwrap();
        fs::write(r.join("work/note"), "from strata\n").unwrap();
        fx.tool("umoci", &["repack", "--image", "oci:app", "ub"]);
        fx.tool("umoci", &["unpack", "--image", "oci:app", "ub2"]);
        fs::remove_file(fx.base().join("ub2/rootfs/etc/doomed")).unwrap();
        fx.tool("umoci", &["repack", "--image", "oci:app", "ub2"]);
        fx.tool(
            "umoci",
            &[
                "config",
                "--image",
                "oci:app",
                "--config.cmd",
                "sh",
                "--config.cmd",
                "-c",
                "--config.cmd",
                "echo $GREETING; pwd; cat note; test -e /etc/doomed || echo doomed is gone",
                "--config.env",
                "GREETING=hello from the config",
                "--config.env",
                "PATH=/bin",
                "--config.workingdir",
                "/work",
            ],
        );
        let id = fx.import(&["oci:app", "app:1"]);
        let ours = fx.inspect("app:1");
        let tar = fx.base().join("app.tar");
        fx.ok(&[
            "image",
            "save",
            "--format",
            "docker-archive",
            "-o",
            tar.to_str().unwrap(),
            "app:1",
        ]);
        let loaded = dk.ok(&["load", "-i", tar.to_str().unwrap()]);
        assert_eq!(
            loaded.trim(),
            "Loaded image: app:1",
            "docker load said {loaded:?}"
        );
        let theirs = dk.inspect("app:1");
        assert_eq!(
            theirs["Id"], id,
            "Docker gives the loaded image the same id"
        );
        assert_eq!(theirs["RootFS"]["Layers"], ours["RootFS"]["Layers"]);
        assert_eq!(theirs["RootFS"]["Layers"].as_array().unwrap().len(), 2);
        let c = &theirs["Config"];
        assert_eq!(c["Cmd"], ours["Config"]["Cmd"]);
        assert_eq!(
            c["Env"],
            strs(&["GREETING=hello from the config", "PATH=/bin"])
        );
        assert_eq!(c["WorkingDir"], "/work");
        // Run by its config: Env and WorkingDir applied, the file read, the deleted one gone.
        let out = dk.ok(&["run", "--rm", "--network", "none", "app:1"]);
        assert_eq!(
            out,
            "hello from the config\n/work\nfrom strata\ndoomed is gone\n"
        );
        let out = dk.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "app:1",
            "sh",
            "-c",
            "cat /etc/passwd; stat -c '%s %a' /bin/busybox; sha256sum /bin/busybox",
        ]);
        let size = fs::metadata("/bin/busybox").unwrap().len();
        let sum = run_ok(Command::new("sha256sum").arg("/bin/busybox")).stdout;
        assert_eq!(
            out,
            format!("root:x:0:0:root:/root:/bin/sh\n{size} 755\n{sum}")
        );
    });
}

#[test]
fn an_image_docker_built_offline_imports_with_its_layers_config_and_whiteouts() {
    timed("import of docker save", || {
        let fx = Fx::new();
        let dk = Dockerd::start();
        let rf = fx.base().join("rootfs");
        busybox_rootfs(&rf);
        let rf_tar = fx.base().join("rootfs.tar");
        run_ok(
            Command::new("tar")
                .arg("-C")
                .arg(&rf)
                .arg("-cf")
                .arg(&rf_tar)
                .arg("."),
        );
        dk.ok(&["import", rf_tar.to_str().unwrap(), "bb:base"]);
        let ctx = fx.base().join("ctx");
        fs::create_dir_all(&ctx).unwrap();
        fs::write(ctx.join("greeting"), "hello\n").unwrap();
        fs::write(
            ctx.join("Dockerfile"),
            "FROM bb:base\n\
             ADD greeting /srv/greeting\n\
             RUN rm /etc/doomed && mkdir /made && echo by-run > /made/file\n\
             ENV GREETING=hi PATH=/bin\n\
             WORKDIR /srv\n\
             CMD [\"cat\", \"greeting\"]\n",
        )
        .unwrap();
        dk.ok(&[
            "build",
            "--network",
            "none",
            "-t",
            "bb:built",
            ctx.to_str().unwrap(),
        ]);
        let saved = fx.base().join("built.tar");
        dk.ok(&["save", "-o", saved.to_str().unwrap(), "bb:built"]);
        let theirs = dk.inspect("bb:built");

        let id = fx.import(&[saved.to_str().unwrap()]);
        assert_eq!(
            id, theirs["Id"],
            "the image id is the config's digest, as Docker's"
        );
        let ours = fx.inspect("bb:built");
        assert_eq!(ours["RootFS"]["Layers"], theirs["RootFS"]["Layers"]);
        assert_eq!(ours["RootFS"]["Layers"].as_array().unwrap().len(), 3);
        assert_eq!(ours["Config"], theirs["Config"]);
        assert_eq!(ours["Config"]["Cmd"], strs(&["cat", "greeting"]));
        assert_eq!(ours["Config"]["WorkingDir"], "/srv");
        // Each layer once in the store, under its diff id.
        let mut want: Vec<String> = theirs["RootFS"]["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                d.as_str()
                    .unwrap()
                    .trim_start_matches("sha256:")
                    .to_string()
            })
            .collect();
        want.sort();
        assert_eq!(fx.layer_dirs(), want);

        let mnt = fx.base().join("mnt");
        let _guard = UnmountGuard(mnt.clone());
        fs::create_dir_all(&mnt).unwrap();
        assert_eq!(fx.ok(&["image", "mount", "bb:built", "mnt"]), "");
        assert_enoent(mnt.join("etc/doomed"));
        assert_eq!(names(mnt.join("etc")), set(&["passwd"]));
        assert_eq!(read(mnt.join("srv/greeting")), "hello\n");
        assert_eq!(read(mnt.join("made/file")), "by-run\n");
        assert_eq!(
            read_bytes(mnt.join("bin/busybox")),
            read_bytes("/bin/busybox")
        );
        assert_eq!(readlink(mnt.join("bin/sh")), "busybox");
        fx.ok(&["image", "umount", "mnt"]);
        assert!(!fuse_mounted(&mnt));
    });
}
