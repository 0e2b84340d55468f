#!/usr/bin/env python3
"""The body of scripts/faults: kills strata's daemon with SIGKILL in the middle of work, remounts,
and checks what a user relies on after a crash. Start it through scripts/faults.

Scenarios (each FAULTS_LOOPS times, a fresh kill point each time):
  copyup   one process appends a byte to a 1 GiB lower file and fsyncs it (the copy-up runs in
           its open); the daemon is killed while that runs.
  rename   one process renames lower directories back and forth (mv a b; fsync of the parent);
           the daemon is killed during the storm.
  create   one process creates files with known content, fsyncs each and unlinks every third;
           the daemon is killed during the storm.
After each kill the mount is taken down (the FUSE connection aborted), remounted on the same
upper and workdir, and checked:
  - no partial file is visible: a file reads either as it was or as it was made, never between;
  - every write whose fsync returned is there with its content (the workload reports each
    acknowledged fsync on a pipe before going on);
  - every entry that existed before the kill keeps its st_ino;
  - the inode table recovers (the daemon's log says so when it had to), and the mount serves.
One line per loop, a summary per scenario, and a Markdown report (FAULTS_OUT)."""

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

MiB = 1 << 20


def log(msg):
    print(msg, flush=True)


def sh(cmd, timeout=120, check=True):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (cmd[0], p.returncode, p.stderr.decode(errors="replace").strip()[-300:]))
    return p.stdout.decode(errors="replace")


def mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(l.split()[4] == path for l in f)


def fuse_conn(path):
    with open("/proc/self/mountinfo") as f:
        for l in f:
            p = l.split()
            if p[4] == path:
                return p[2].split(":")[1]
    return None


class Faults:
    def __init__(self):
        e = os.environ
        self.strata = os.path.realpath(e["STRATA"])
        self.dir = os.path.abspath(e.get("FAULTS_DIR") or "/var/tmp/strata-faults")
        self.loops = int(e.get("FAULTS_LOOPS") or 50)
        self.big_mib = int(e.get("FAULTS_BIG_MIB") or 1024)
        self.out = e.get("FAULTS_OUT") or ""
        self.only = [s for s in (e.get("FAULTS_ONLY") or "copyup,rename,create").split(",") if s]
        self.lower = os.path.join(self.dir, "lower")
        self.upper, self.work, self.mnt = (os.path.join(self.dir, x) for x in ("upper", "work", "mnt"))
        self.results = {}
        self.rng = random.Random(int(e.get("FAULTS_SEED") or 1))

    # ---- the lower layer: made once, reused

    def ensure_lower(self):
        stamp = os.path.join(self.dir, ".lower-%d" % self.big_mib)
        if os.path.exists(stamp):
            return
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.lower)
        block = bytearray(os.urandom(MiB))
        with open(os.path.join(self.lower, "big"), "wb") as f:
            for i in range(self.big_mib):
                block[:8] = i.to_bytes(8, "little")
                f.write(block)
        for d in range(20):
            dp = os.path.join(self.lower, "dirs", "d%02d" % d)
            os.makedirs(dp)
            for i in range(10):
                with open(os.path.join(dp, "f%d" % i), "w") as f:
                    f.write("dir %d file %d\n" % (d, i) * (i + 1))
        os.makedirs(os.path.join(self.lower, "files"))
        for i in range(200):
            with open(os.path.join(self.lower, "files", "l%03d" % i), "w") as f:
                f.write("lower file %d\n" % i)
        open(stamp, "w").close()
        self.big_sum = None

    def big_samples(self, path, size):
        """sha256 of the first and last MiB and of eight MiB-blocks in between."""
        h = hashlib.sha256()
        n = size // MiB
        with open(path, "rb") as f:
            for k in sorted({0, max(0, n - 1)} | {(n * j) // 8 for j in range(8)}):
                f.seek(k * MiB)
                h.update(f.read(MiB))
        return h.hexdigest()

    # ---- mounting

    def fresh(self):
        self.take_down()
        for d in (self.upper, self.work):
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
        os.makedirs(self.mnt, exist_ok=True)

    def mount(self):
        o = "lowerdir=%s,upperdir=%s,workdir=%s" % (self.lower, self.upper, self.work)
        env = dict(os.environ, RUST_LOG="strata=warn,strata::union=info")
        p = subprocess.run([self.strata, "mount", "--log", os.path.join(self.dir, "daemon.log"), "-o", o, self.mnt],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, env=env)
        if p.returncode != 0:
            raise RuntimeError("mount failed: %s" % p.stderr.decode(errors="replace").strip())

    def daemon_pid(self):
        with open("/run/strata/%s.pid" % self.mnt.encode().hex()) as f:
            return int(f.read().strip())

    def kill_daemon(self):
        pid = self.daemon_pid()
        os.kill(pid, signal.SIGKILL)
        t0 = time.time()
        while os.path.exists("/proc/%d" % pid) and time.time() - t0 < 30:
            try:
                with open("/proc/%d/stat" % pid) as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        break
            except OSError:
                break
            time.sleep(0.005)

    def take_down(self):
        """A dead daemon's mount: abort its connection, detach it."""
        while self.mnt and mounted(self.mnt):
            c = fuse_conn(self.mnt)
            if c:
                try:
                    with open("/sys/fs/fuse/connections/%s/abort" % c, "w") as f:
                        f.write("1")
                except OSError:
                    pass
            subprocess.run(["umount", "-l", self.mnt], stderr=subprocess.DEVNULL)

    def umount(self):
        sh([self.strata, "umount", self.mnt])

    def inos(self, rels):
        out = {}
        for r in rels:
            try:
                out[r] = os.lstat(os.path.join(self.mnt, r)).st_ino
            except FileNotFoundError:
                pass
        return out

    # ---- a workload in a child process, reporting acknowledged steps on a pipe

    def start(self, argv):
        rd, wr = os.pipe()
        p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--work", str(wr)] + argv,
                             pass_fds=(wr,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(wr)
        return p, rd

    def acks(self, rd):
        data = b""
        while True:
            try:
                chunk = os.read(rd, 65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        os.close(rd)
        return [l for l in data.decode().split("\n") if l]

    def crash(self, argv, delay):
        """Run a workload, kill the daemon after `delay` seconds, end the workload; returns its acks."""
        p, rd = self.start(argv)
        time.sleep(delay)
        self.kill_daemon()
        self.take_down()  # the workload's blocked calls now fail with ENOTCONN
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        return self.acks(rd)

    # ---- scenarios: each returns a list of problems (empty: the loop passed)

    def s_copyup(self, i):
        self.fresh()
        self.mount()
        size = os.path.getsize(os.path.join(self.lower, "big"))
        before = self.inos(["big", "files", "files/l000"])
        self.umount()
        self.mount()
        acks = self.crash(["append", os.path.join(self.mnt, "big")], self.rng.uniform(0.02, 1.2))
        self.mount()
        bad = []
        p = os.path.join(self.mnt, "big")
        st = os.lstat(p)
        if st.st_size not in (size, size + 1):
            bad.append("big has %d bytes: a partial copy is visible" % st.st_size)
        if "fsynced" in acks and st.st_size != size + 1:
            bad.append("the fsync'd append is lost (size %d)" % st.st_size)
        if self.big_samples(p, size) != self.big_sum:
            bad.append("big's data differs from the lower's")
        if st.st_size == size + 1:
            with open(p, "rb") as f:
                f.seek(size)
                if f.read() != b"X":
                    bad.append("the appended byte is wrong")
        after = self.inos(before)
        if after != before:
            bad.append("st_ino changed: %s -> %s" % (before, after))
        leftovers = os.listdir(os.path.join(self.work, "work"))
        if leftovers:
            bad.append("workdir/work holds %s after the remount" % leftovers)
        self.umount()
        return bad, "copied up" if st.st_size == size + 1 else "not copied up"

    def s_rename(self, i):
        self.fresh()
        self.mount()
        dirs = ["dirs/d%02d" % d for d in range(20)]
        rels = dirs + ["%s/f%d" % (d, k) for d in dirs for k in range(10)]
        before = self.inos(rels)
        content = {r: open(os.path.join(self.lower, r)).read() for r in rels if "/f" in r}
        self.umount()
        self.mount()
        acks = self.crash(["renames", os.path.join(self.mnt, "dirs")], self.rng.uniform(0.05, 1.0))
        self.mount()
        bad = []
        # Where each directory is now, and where the last acknowledged rename put it.
        # A rename that began but was not acknowledged may or may not have happened.
        where, in_flight = {}, None
        for a in acks:
            op, d, name = a.split()
            if op == "start":
                in_flight = d
            else:
                where[d] = name
                in_flight = None
        for d in range(20):
            base = "d%02d" % d
            names = [n for n in (base, base + ".moved") if os.path.isdir(os.path.join(self.mnt, "dirs", n))]
            if len(names) != 1:
                bad.append("%s is at %s" % (base, names or "no name"))
                continue
            now = "dirs/" + names[0]
            if base in where and where[base] != names[0] and base != in_flight:
                bad.append("%s: the acknowledged rename to %s is lost (found %s)" % (base, where[base], names[0]))
            old = "dirs/" + base
            if os.lstat(os.path.join(self.mnt, now)).st_ino != before[old]:
                bad.append("%s changed st_ino across the crash" % base)
            for k in range(10):
                f = os.path.join(self.mnt, now, "f%d" % k)
                try:
                    if open(f).read() != content["%s/f%d" % (old, k)]:
                        bad.append("%s/f%d has other content" % (now, k))
                    if os.lstat(f).st_ino != before["%s/f%d" % (old, k)]:
                        bad.append("%s/f%d changed st_ino" % (now, k))
                except FileNotFoundError:
                    bad.append("%s/f%d is gone" % (now, k))
        self.umount()
        return bad, "%d renames acknowledged" % len(where and [a for a in acks if a.startswith("renamed")])

    def s_create(self, i):
        self.fresh()
        self.mount()
        lowers = ["files/l%03d" % k for k in range(200)]
        before = self.inos(lowers)
        self.umount()
        self.mount()
        acks = self.crash(["creates", os.path.join(self.mnt, "files")], self.rng.uniform(0.05, 1.0))
        self.mount()
        bad = []
        made, gone, in_flight = set(), set(), None
        for a in acks:
            op, name = a.split()
            if op == "unlinking":
                in_flight = name  # may or may not be gone
            else:
                (made if op == "made" else gone).add(name)
        for name in sorted(made - gone - {in_flight}):
            p = os.path.join(self.mnt, "files", name)
            try:
                if open(p).read() != workload_content(name):
                    bad.append("%s: acknowledged content differs" % name)
            except FileNotFoundError:
                bad.append("%s: acknowledged file is gone" % name)
        for name in os.listdir(os.path.join(self.mnt, "files")):
            if name.startswith("n") and name not in gone:
                data = open(os.path.join(self.mnt, "files", name)).read()
                if data and data != workload_content(name):
                    bad.append("%s: partial content visible (%d bytes)" % (name, len(data)))
        for name in gone:
            if os.path.exists(os.path.join(self.mnt, "files", name)):
                bad.append("%s: an acknowledged unlink came back" % name)
        after = self.inos(lowers)
        if after != before:
            bad.append("lower files changed st_ino")
        self.umount()
        return bad, "%d creates, %d unlinks acknowledged" % (len(made), len(gone))

    def run(self):
        self.ensure_lower()
        try:
            os.unlink(os.path.join(self.dir, "daemon.log"))  # counted below, for this run only
        except FileNotFoundError:
            pass
        self.big_sum = self.big_samples(os.path.join(self.lower, "big"), os.path.getsize(os.path.join(self.lower, "big")))
        for name in self.only:
            fn = getattr(self, "s_" + name)
            res = self.results[name] = {"loops": 0, "failed": 0, "problems": [], "outcomes": {}}
            for i in range(self.loops):
                try:
                    bad, what = fn(i)
                except Exception as e:  # noqa: BLE001 - a loop that cannot run counts as failed
                    bad, what = ["error: %s" % e], "error"
                    self.take_down()
                res["loops"] += 1
                kind = what.split(" acknowledged")[0] if name == "copyup" else "ran"
                res["outcomes"][kind] = res["outcomes"].get(kind, 0) + 1
                if bad:
                    res["failed"] += 1
                    res["problems"].extend("loop %d: %s" % (i + 1, b) for b in bad)
                log("%-7s %3d/%d  %-40s %s" % (name, i + 1, self.loops, what, "; ".join(bad) or "ok"))
        self.take_down()
        recovered = 0
        try:
            with open(os.path.join(self.dir, "daemon.log")) as f:
                recovered = sum(1 for l in f if "not shut down cleanly" in l)
        except OSError:
            pass
        self.report(recovered)
        return 0 if all(r["failed"] == 0 for r in self.results.values()) else 1

    def report(self, recovered):
        lines = ["| scenario | loops | failed | notes |", "|---|---:|---:|---|"]
        for name, r in self.results.items():
            notes = ", ".join("%s: %d" % kv for kv in sorted(r["outcomes"].items()))
            lines.append("| %s | %d | %d | %s |" % (name, r["loops"], r["failed"], notes))
        text = "\n".join(lines)
        text += "\n\nRemounts that found the inode table not shut down cleanly and restored it: %d.\n" % recovered
        problems = [p for r in self.results.values() for p in r["problems"]]
        if problems:
            text += "\nProblems:\n\n" + "\n".join("- " + p for p in problems[:50]) + "\n"
        log("\n" + text)
        if self.out:
            with open(self.out, "w") as f:
                f.write(text)


# ---- workloads (run in a child: `faults.py --work FD KIND PATH`)


def workload_content(name):
    return ("content of %s\n" % name) * (1 + int(name[1:]) % 50)


def work(fd, kind, path):
    ack = os.fdopen(fd, "w", buffering=1)
    try:
        if kind == "append":
            f = os.open(path, os.O_WRONLY | os.O_APPEND)
            os.write(f, b"X")
            os.fsync(f)
            ack.write("fsynced\n")
            os.close(f)
        elif kind == "renames":
            dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            rng = random.Random(os.getpid())
            while True:
                d = "d%02d" % rng.randrange(20)
                a, b = (d, d + ".moved") if os.path.isdir(os.path.join(path, d)) else (d + ".moved", d)
                ack.write("start %s %s\n" % (d, b))
                os.rename(os.path.join(path, a), os.path.join(path, b))
                os.fsync(dfd)
                ack.write("renamed %s %s\n" % (d, b))
        elif kind == "creates":
            dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            i = 0
            while True:
                name = "n%06d" % i
                p = os.path.join(path, name)
                with open(p, "w") as f:
                    f.write(workload_content(name))
                    f.flush()
                    os.fsync(f.fileno())
                os.fsync(dfd)
                ack.write("made %s\n" % name)
                if i % 3 == 2:
                    victim = "n%06d" % (i - 1)
                    ack.write("unlinking %s\n" % victim)
                    os.unlink(os.path.join(path, victim))
                    os.fsync(dfd)
                    ack.write("gone %s\n" % victim)
                i += 1
    except OSError:
        pass  # the daemon was killed under us


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--work":
        work(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        sys.exit(0)
    f = Faults()
    try:
        code = f.run()
    finally:
        f.take_down()
    sys.exit(code)
