"""Workloads of scripts/bench that time a whole mount's life rather than what is done inside one:

  mount_cycle    mount + first `ls -l bin` + umount of a busybox tree, fresh upper and workdir
  remount_cycle  the same over an upper that has copy-ups, so strata's inode table exists
  podman_run     `podman run --rm IMAGE true` (rootful), each FUSE filesystem as the overlay
                 driver's mount_program; kernel: the driver's own kernel mounts; plain: the vfs
                 driver (a full copy of the image per container)

Each cycle is timed from the mount command to the return of the unmount command, which is what a
script or a container engine waits for. The busybox tree and the podman storages live under
BENCH_DIR and are made once per run. Only the standard library is used."""

import os
import resource
import shutil
import subprocess

import bench  # the harness (scripts/bench.py); names are looked up when a workload runs

IMAGE = "localhost/strata-bench-busybox:latest"
# runc, as issue 15 measured: Debian's crun 1.8 refuses hosts with cgroup v1 controllers and a v2
# hierarchy beside them ("cgroups in hybrid mode not supported"), and podman prefers crun.
RUN = ["podman", "run", "--runtime", "runc", "--rm", "--network", "none", IMAGE, "true"]


def busybox_tree(b):
    """BENCH_DIR/busybox: /bin/busybox (static) and its applet links, /etc/passwd, /etc/group."""
    root = os.path.join(b.dir, "busybox")
    if os.path.exists(os.path.join(root, ".complete")):
        return root
    if not os.path.exists("/bin/busybox"):
        raise bench.BenchError("/bin/busybox is missing: apt-get install busybox-static")
    shutil.rmtree(root, ignore_errors=True)
    for d in ("bin", "etc", "tmp", "root", "proc", "sys", "dev"):
        os.makedirs(os.path.join(root, d))
    shutil.copy2("/bin/busybox", os.path.join(root, "bin/busybox"))
    applets = subprocess.run(["/bin/busybox", "--list"], stdout=subprocess.PIPE, check=True).stdout.split()
    for a in applets:
        if a != b"busybox":
            os.symlink("busybox", os.path.join(root, "bin", a.decode()))
    with open(os.path.join(root, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(root, "etc/group"), "w") as f:
        f.write("root:x:0:\nnobody:x:65534:\n")
    open(os.path.join(root, ".complete"), "w").close()
    return root


def _cycle(b, impl, populate):
    tree = busybox_tree(b)
    if isinstance(impl, bench.Plain):
        t, out, _ = bench.sh(["ls", "-l", os.path.join(tree, "bin")], b.timeout)
        return t
    upper, work, mnt = b.fresh_run_dir()
    if populate:
        # Copy-ups, then a clean unmount: the next mount finds an upper with a table to open.
        mnt = b.mount(impl, [tree], fresh=False)
        try:
            for name in ("etc/passwd", "etc/group"):
                with open(os.path.join(mnt, name), "a") as f:
                    f.write("")
                    os.utime(f.fileno())
        finally:
            b.finish(impl, mnt)
    t, _ = b.timed_cycle(impl, [tree], lambda m: bench.sh(["ls", "-l", os.path.join(m, "bin")], b.timeout))
    return t


def w_mount_cycle(b, impl):
    return _cycle(b, impl, populate=False)


def w_remount_cycle(b, impl):
    return _cycle(b, impl, populate=True)


# ---- podman


def _program(b, impl):
    if isinstance(impl, bench.Strata):
        return impl.bin
    return {"fuse-overlayfs": shutil.which("fuse-overlayfs") or "fuse-overlayfs"}.get(impl.name)


def _storage(b, impl):
    """A podman storage for impl under BENCH_DIR/pm (short paths: podman 4.3 stalls on long
    runroots), with the busybox image imported once."""
    d = os.path.join(b.dir, "pm", {"strata-base": "sbase", "fuse-overlayfs": "fuse-o"}.get(impl.name, impl.name))
    conf = os.path.join(d, "storage.conf")
    env = dict(os.environ, CONTAINERS_STORAGE_CONF=conf, CONTAINERS_CONF=os.path.join(d, "containers.conf"))
    if os.path.exists(os.path.join(d, ".imported")):
        return env
    if shutil.which("podman") is None:
        raise bench.BenchError("podman is missing: apt-get install podman runc")
    for sub in ("root", "run", "tmp"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    # podman asks for RLIMIT_NOFILE and RLIMIT_NPROC above what runc may set without
    # CAP_SYS_RESOURCE here ("error setting rlimits"): ask for limits that fit.
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nproc = 32768 if nproc == resource.RLIM_INFINITY else min(nproc, 32768)
    with open(os.path.join(d, "containers.conf"), "w") as f:
        f.write('[containers]\ndefault_ulimits = ["nofile=%d:%d", "nproc=%d:%d"]\n' % (nofile, nofile, nproc, nproc))
        f.write('[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\ntmp_dir = "%s/tmp"\n' % d)
    with open(conf, "w") as f:
        driver = "vfs" if isinstance(impl, bench.Plain) else "overlay"
        f.write('[storage]\ndriver = "%s"\ngraphroot = "%s/root"\nrunroot = "%s/run"\n' % (driver, d, d))
        prog = _program(b, impl)
        if prog:
            f.write('[storage.options.overlay]\nmount_program = "%s"\n' % prog)
    tar = os.path.join(b.dir, "pm", "busybox.tar")
    if not os.path.exists(tar):
        bench.sh(["tar", "-C", busybox_tree(b), "--exclude=./.complete", "-cf", tar, "."], b.timeout)
    bench.sh(["podman", "import", tar, IMAGE], b.timeout, env=env)
    # One untimed run: podman's first container in a storage makes its state databases.
    bench.sh(RUN, b.timeout, env=env)
    open(os.path.join(d, ".imported"), "w").close()
    return env


def w_podman_run(b, impl):
    env = _storage(b, impl)
    t, _, _ = bench.sh(RUN, b.timeout, env=env)
    return t


def cleanup(b):
    """Removes every container left in the storages and the storages themselves."""
    pm = os.path.join(b.dir, "pm")
    if not os.path.isdir(pm):
        return
    for name in os.listdir(pm):
        conf = os.path.join(pm, name, "storage.conf")
        if os.path.exists(conf):
            env = dict(os.environ, CONTAINERS_STORAGE_CONF=conf,
                       CONTAINERS_CONF=os.path.join(pm, name, "containers.conf"))
            subprocess.run(["podman", "rm", "-af", "-t", "0"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            subprocess.run(["podman", "system", "reset", "-f"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["umount", "-R", "-l", pm], stderr=subprocess.DEVNULL)
    shutil.rmtree(pm, ignore_errors=True)
