#!/usr/bin/env python3
"""Runs every ```console block of docs/LAB.md and compares the output with what the block shows.

A block holds `$ COMMAND` lines, each followed by the output it prints (stdout and stderr
together). All commands run in one bash, in order, in a fresh scratch directory shown in LAB.md as
/lab, with target/release/strata first in PATH and STRATA_ROOT=/lab/state. What varies from run
to run is normalised on both sides before comparing: ids (64 and 12 hex digits), times ("... ago",
"in 1.234 ms"), namespace and inode numbers (each distinct number becomes N1, N2, ... in the order
it first appears in the block, so that equal numbers stay equal), and runs of spaces.

    scripts/lab            # run, print a diff of every block that differs, exit 1 if any does
    scripts/lab --update   # run, and write the real output into LAB.md (paths shown as /lab)

Every mount under the scratch directory and every container of its state root is removed at the
end, also when a step fails or the run is interrupted.
"""

import difflib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB_MD = os.path.join(REPO, "docs", "LAB.md")
STRATA = os.environ.get("STRATA_BIN", os.path.join(REPO, "target", "release", "strata"))
STEP_TIMEOUT = 30
SHOWN_DIR = "/lab"


def parse(text):
    """The console blocks: (start line, [(command, expected output)])."""
    blocks = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```console":
            start = i
            i += 1
            steps = []
            while i < len(lines) and lines[i].strip() != "```":
                line = lines[i]
                if line.startswith("$ "):
                    steps.append([line[2:], []])
                elif steps:
                    steps[-1][1].append(line)
                elif line.strip():
                    sys.exit(f"LAB.md:{i + 1}: output before any `$ ` command in a console block")
                i += 1
            blocks.append((start, [(c, "\n".join(o)) for c, o in steps]))
        i += 1
    return blocks


def vary(s):
    """What differs from run to run, made the same."""
    s = re.sub(r"\b[0-9a-f]{64}\b", "<ID>", s)
    s = re.sub(r"\b[0-9a-f]{12}\b", "<ID12>", s)
    s = re.sub(r"in [0-9.]+ ms", "in <T> ms", s)
    s = re.sub(r"\"micros\":[0-9]+", '"micros":<T>', s)
    s = re.sub(
        r"(Less than a second|About a minute|About an hour|[0-9]+ (seconds|minutes|hours))( ago)?",
        "<WHEN>",
        s,
    )
    seen = {}

    def number(m):
        seen.setdefault(m.group(2), f"N{len(seen) + 1}")
        return m.group(1) + seen[m.group(2)] + m.group(3)

    s = re.sub(r"(\[)([0-9]{5,})(\])", number, s)
    s = re.sub(r"(\binode )([0-9]+)()", number, s)
    s = re.sub(r"()(\b[0-9]{7,}\b)()", number, s)
    # The busybox of the machine decides the image layer's size and entry count.
    s = re.sub(r"\b[0-9.]+ (B|KiB|MiB|GiB)\b", "<SIZE>", s)
    s = re.sub(r"\b[0-9]+ entries\b", "<N> entries", s)
    # Boxes are as wide as the longest path in them.
    s = re.sub(r"─+", "─", s)
    s = re.sub(r"[ \t]+", " ", s)
    return "\n".join(line.rstrip() for line in s.split("\n")).strip("\n")


def shown(text, lab):
    """`text` with the scratch directory shown as /lab; a box's right edge stays in place."""
    lines = []
    for line in text.split("\n"):
        j = line.find("│", 1) if line.startswith("│") else -1
        if j > 0:
            head = line[:j].replace(lab, SHOWN_DIR)
            head += " " * (j - len(head))
            lines.append(head + line[j:].replace(lab, SHOWN_DIR))
        else:
            lines.append(line.replace(lab, SHOWN_DIR))
    return "\n".join(lines)


class Shell:
    """One bash for the whole lab, so cd, variables and background jobs carry over."""

    def __init__(self, cwd, env):
        self.p = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        self.n = 0

    def run(self, cmd):
        self.n += 1
        mark = f"__strata_lab_{self.n}__"
        script = f"{cmd}\n__rc=$?; echo; echo {mark} $__rc\n"
        self.p.stdin.write(script.encode())
        self.p.stdin.flush()
        out = []
        deadline = time.time() + STEP_TIMEOUT
        os.set_blocking(self.p.stdout.fileno(), False)
        buf = b""
        while True:
            if time.time() > deadline:
                raise TimeoutError(f"`{cmd}` still runs after {STEP_TIMEOUT} s")
            try:
                chunk = os.read(self.p.stdout.fileno(), 65536)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            if not chunk:
                raise RuntimeError(f"the shell ended during `{cmd}`")
            buf += chunk
            text = buf.decode(errors="replace")
            m = re.search(rf"\n?{mark} ([0-9]+)\n", text)
            if m:
                out = text[: m.start()]
                # The echo before the mark ends a last line without a newline.
                return out[:-1] if out.endswith("\n") else out

    def close(self):
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.p.wait()


def strata_mounts_under(d):
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" ")
            mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            if mp == d or mp.startswith(d + "/"):
                found.append(mp)
    return found


def cleanup(lab, env):
    """Every container of the lab's state root, then every mount under the lab."""
    run = lambda *a: subprocess.run(a, env=env, capture_output=True, text=True, timeout=60)
    if os.path.isdir(os.path.join(lab, "state")):
        try:
            ids = run(STRATA, "ps", "-aq").stdout.split()
            if ids:
                run(STRATA, "rm", "-f", "-v", *ids)
        except subprocess.TimeoutExpired:
            pass
    for mp in reversed(strata_mounts_under(lab)):
        r = run(STRATA, "umount", mp)
        if r.returncode != 0:
            run("umount", "-l", mp)
    left = strata_mounts_under(lab)
    if left:
        print(f"lab: still mounted: {left}", file=sys.stderr)
        return False
    shutil.rmtree(lab, ignore_errors=True)
    return True


def main():
    update = "--update" in sys.argv[1:]
    text = open(LAB_MD).read()
    blocks = parse(text)
    lab = tempfile.mkdtemp(prefix="strata-lab.")
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(STRATA) + ":" + env.get("PATH", "")
    env["STRATA_ROOT"] = os.path.join(lab, "state")
    env["LAB"] = lab
    env["LABFILES"] = os.path.join(REPO, "docs", "lab")
    env.pop("RUST_LOG", None)
    env["LC_ALL"] = "C"
    env["TZ"] = "UTC"
    shell = Shell(lab, env)
    results = []
    failed = 0
    t0 = time.time()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    try:
        for start, steps in blocks:
            got = []
            for cmd, want in steps:
                try:
                    out = shown(shell.run(cmd), lab)
                except TimeoutError as e:
                    out = f"<lab: {e}>"
                got.append((cmd, want, out))
            results.append((start, got))
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        failed += 1
    finally:
        shell.close()
        if not cleanup(lab, env):
            failed += 1
    if update:
        lines = text.split("\n")
        for start, got in reversed(results):
            end = start + 1
            while lines[end].strip() != "```":
                end += 1
            body = []
            for cmd, _, out in got:
                body.append("$ " + cmd)
                if out:
                    body.extend(out.split("\n"))
            lines[start + 1 : end] = body
        open(LAB_MD, "w").write("\n".join(lines))
        print(f"lab: wrote the output of {len(results)} blocks into {LAB_MD}")
        return 1 if failed else 0
    for start, got in results:
        for cmd, want, out in got:
            if vary(want) != vary(out):
                failed += 1
                diff = difflib.unified_diff(
                    want.split("\n"), out.split("\n"), "LAB.md", "this run", lineterm=""
                )
                print(f"docs/LAB.md:{start + 1}: `$ {cmd}` printed something else:")
                print("\n".join(diff))
                print()
    steps = sum(len(g) for _, g in results)
    took = time.time() - t0
    if failed:
        print(f"lab: {failed} of {steps} steps differ from docs/LAB.md ({took:.0f} s)")
        return 1
    print(f"lab: all {steps} steps of {len(results)} blocks print what docs/LAB.md shows ({took:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
