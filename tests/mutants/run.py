"""Mutation check: each *.mutant is a hand-written bug; the tests it names must catch it.

Called by run.sh, which holds the scratch lock. For each mutant: mutate one file in the
scratch source, build the named ninja targets, run the named tests (any failure = killed),
restore the file. Output: one line per mutant, the wall time, and last `N mutants, K killed`.
Exit status 0 only when every mutant was killed.
"""

import argparse
import fnmatch
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

KEYS = ("what", "file", "find", "replace", "build", "test")
# Left out of the scratch copy: git data, build trees (build, build-asan, build-mutants, ...).
EXCLUDE_TOP = (".git",)
EXCLUDE_TOP_PREFIX = ("build",)
EXCLUDE_ANY = ("__pycache__", ".pytest_cache")


class Interrupted(Exception):
    pass


@dataclass
class Mutant:
    name: str
    path: Path
    what: str = ""
    file: str = ""
    find: str = ""
    replace: str = ""
    build: list = field(default_factory=list)
    tests: list = field(default_factory=list)


def parse(path):
    m = Mutant(name=path.stem, path=path)
    seen = set()
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        key, sep, value = raw.partition(":")
        key = key.strip()
        if not sep or key not in KEYS:
            raise ValueError(f"{path}:{lineno}: expected one of {', '.join(KEYS)} then ':'")
        value = value.strip()
        if key == "test":
            m.tests.append(value)
        elif key in seen:
            raise ValueError(f"{path}:{lineno}: '{key}' given twice")
        elif key == "build":
            m.build = value.split()
        else:
            setattr(m, key, value)
        seen.add(key)
    missing = [k for k in KEYS if k not in seen]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}")
    if not m.find or not m.build or not all(m.tests):
        raise ValueError(f"{path}: find, build and test must not be empty")
    if m.find == m.replace:
        raise ValueError(f"{path}: replace is the same as find")
    return m


def excluded(rel_parts):
    top = rel_parts[0]
    if top in EXCLUDE_TOP or top.startswith(EXCLUDE_TOP_PREFIX):
        return True
    return any(p in EXCLUDE_ANY for p in rel_parts)


def sync_tree(root, dest):
    """Make dest a copy of root's working tree, writing only files whose content differs.

    Not rsync -a: it would put back the working tree's older mtimes over files a previous
    run mutated, built and restored, and ninja, which only asks "is the input newer than
    the output", would then keep the objects built from the mutant. A file written here
    gets a fresh mtime, so ninja rebuilds exactly what changed.
    """
    wanted = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if not excluded((rel_dir / d).parts)]
        for name in filenames:
            rel = rel_dir / name
            if excluded(rel.parts):
                continue
            src = Path(dirpath) / name
            dst = dest / rel
            wanted.add(rel)
            if src.is_symlink():
                target = os.readlink(src)
                if dst.is_symlink() and os.readlink(dst) == target:
                    continue
                if dst.exists() or dst.is_symlink():
                    dst.unlink()
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(target, dst)
                continue
            data = src.read_bytes()
            if dst.is_file() and not dst.is_symlink() and dst.read_bytes() == data:
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_symlink():
                dst.unlink()
            dst.write_bytes(data)
            os.chmod(dst, src.stat().st_mode & 0o7777)
    for dirpath, dirnames, filenames in os.walk(dest, topdown=False):
        rel_dir = Path(dirpath).relative_to(dest)
        for name in filenames:
            if (rel_dir / name) not in wanted:
                (Path(dirpath) / name).unlink()
        for d in dirnames:
            p = Path(dirpath) / d
            if not p.is_symlink() and not any(p.iterdir()):
                p.rmdir()


class Runner:
    def __init__(self, args):
        self.root = Path(args.root)
        self.scratch = Path(args.scratch)
        self.src = self.scratch / "src"
        self.build = self.scratch / "build"
        self.timeout = args.timeout
        self.verbose = args.verbose
        self.jobs = args.jobs
        self.child = None

    # --- processes -------------------------------------------------------------------------
    def run(self, argv, timeout=None, env=None, cwd=None):
        """Runs argv in its own process group; returns (exit code or None on timeout, output)."""
        self.child = subprocess.Popen(argv, cwd=cwd or self.build, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        try:
            out, _ = self.child.communicate(timeout=timeout)
            return self.child.returncode, out.decode(errors="replace")
        except subprocess.TimeoutExpired:
            self.kill_child()
            out, _ = self.child.communicate()
            return None, out.decode(errors="replace")
        finally:
            self.child = None

    def kill_child(self):
        if self.child and self.child.poll() is None:
            try:
                os.killpg(self.child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def test_argv(self, command):
        words = shlex.split(command)
        if words and words[0] == "pytest":
            tests = self.src / "tests" / "integration"
            rest = [str(tests / w) if ".py" in w and not w.startswith("-") else w for w in words[1:]]
            return ["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", *rest]
        return words

    def test_env(self):
        # What tests/CMakeLists.txt gives the integration tests under ctest.
        env = dict(os.environ)
        env.update(WSGATE_BIN=str(self.build / "wsgate"),
                   WSLOAD_BIN=str(self.build / "tests" / "bench" / "wsload"),
                   WSGATE_SOURCE_DIR=str(self.src),
                   ASAN_OPTIONS="quarantine_size_mb=8:detect_leaks=1",
                   UBSAN_OPTIONS="print_stacktrace=1")
        env.pop("GTEST_FILTER", None)
        return env

    def ninja(self, targets):
        argv = ["ninja", "-C", str(self.build)]
        if self.jobs:
            argv += ["-j", str(self.jobs)]
        return self.run(argv + targets, cwd=self.scratch)

    # --- steps -----------------------------------------------------------------------------
    def prepare(self, targets):
        self.src.mkdir(parents=True, exist_ok=True)
        sync_tree(self.root, self.src)
        if not (self.build / "build.ninja").is_file():
            code, out = self.run(["cmake", "-S", str(self.src), "-B", str(self.build), "-G",
                                  "Ninja", "-DCMAKE_BUILD_TYPE=RelWithDebInfo"],
                                 cwd=self.scratch)
            if code != 0:
                sys.exit(f"mutants: configuring {self.build} failed:\n{out}")
        code, out = self.ninja(sorted(targets))
        if code != 0:
            sys.exit(f"mutants: the unmutated tree does not build ({' '.join(targets)}):\n{out}")

    def baseline(self, commands):
        env = self.test_env()
        for command in commands:
            start = time.monotonic()
            code, out = self.run(self.test_argv(command), timeout=self.timeout, env=env)
            took = time.monotonic() - start
            if code != 0:
                why = "timed out" if code is None else f"exit {code}"
                sys.exit(f"{out}\nmutants: baseline failed ({why}) on the unmutated tree: "
                         f"{command}\nFix the tests or the tree first: every mutant would "
                         "look killed.")
            if self.verbose:
                print(f"baseline ok {took:6.1f}s  {command}", flush=True)

    def mutate(self, m):
        """Returns (status, detail). status: killed, SURVIVED or STALE."""
        target = self.src / m.file
        if not target.is_file():
            return "STALE", f"{m.file} does not exist"
        original = target.read_bytes()
        text = original.decode()
        count = text.count(m.find)
        if count != 1:
            return "STALE", f"find text occurs {count} times in {m.file}"
        try:
            target.write_text(text.replace(m.find, m.replace))
            code, out = self.ninja(m.build)
            if code != 0:
                return "STALE", "mutated tree does not build" + self.tail(out)
            if "ninja: no work to do" in out:
                return "STALE", f"build targets {' '.join(m.build)} do not use {m.file}"
            env = self.test_env()
            for command in m.tests:
                code, out = self.run(self.test_argv(command), timeout=self.timeout, env=env)
                if code is None:
                    return "killed", f"timed out after {self.timeout}s: {command}"
                if code != 0:
                    return "killed", f"by {command}"
            return "SURVIVED", m.what
        finally:
            target.write_bytes(original)
            # A fresh mtime, newer than the object built from the mutant, so ninja rebuilds.
            os.utime(target)

    @staticmethod
    def tail(out, lines=15):
        return "\n" + "\n".join(out.rstrip().splitlines()[-lines:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--scratch", required=True)
    ap.add_argument("--check", action="store_true",
                    help="only parse the mutants and check each find text against the tree")
    ap.add_argument("--verbose", "-v", action="store_true")
    ap.add_argument("--timeout", type=int, default=int(os.environ.get("MUTANT_TIMEOUT", 300)),
                    help="seconds per test command; over it counts as killed")
    ap.add_argument("--jobs", "-j", type=int, default=int(os.environ.get("MUTANT_JOBS", 0)))
    ap.add_argument("globs", nargs="*", help="mutant names (file stems) to run; default all")
    args = ap.parse_args()

    started = time.monotonic()
    files = sorted(Path(args.root, "tests", "mutants").glob("*.mutant"))
    if args.globs:
        files = [f for f in files if any(fnmatch.fnmatch(f.stem, g) for g in args.globs)]
    if not files:
        sys.exit(f"mutants: no mutant matches {' '.join(args.globs) or '*'}")
    try:
        mutants = [parse(f) for f in files]
    except (ValueError, UnicodeDecodeError) as e:
        sys.exit(f"mutants: {e}")

    if args.check:
        bad = 0
        for m in mutants:
            path = Path(args.root, m.file)
            n = path.read_text().count(m.find) if path.is_file() else -1
            if n != 1:
                bad += 1
                print(f"STALE    {m.name}: find text occurs {max(n, 0)} times in {m.file}")
        print(f"{len(mutants)} mutants, {bad} stale")
        return 1 if bad else 0

    runner = Runner(args)

    def on_signal(signum, _frame):
        runner.kill_child()
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    try:
        targets = {t for m in mutants for t in m.build}
        runner.prepare(targets)
        prepared = time.monotonic()
        commands = list(dict.fromkeys(c for m in mutants for c in m.tests))
        runner.baseline(commands)
        baselined = time.monotonic()
        print(f"scratch build {prepared - started:.0f}s, baseline of {len(commands)} test "
              f"commands {baselined - prepared:.0f}s", flush=True)
        killed = 0
        for m in mutants:
            t0 = time.monotonic()
            status, detail = runner.mutate(m)
            killed += status == "killed"
            print(f"{status:<8} {m.name:<40} {time.monotonic() - t0:6.1f}s  {detail}",
                  flush=True)
    except Interrupted as e:
        sys.exit(f"mutants: interrupted ({e}); the scratch file was restored")
    print(f"wall time {time.monotonic() - started:.0f}s")
    print(f"{len(mutants)} mutants, {killed} killed")
    return 0 if killed == len(mutants) else 1


if __name__ == "__main__":
    sys.exit(main())
