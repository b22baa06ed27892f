"""Check a repaired gopool wheel before it leaves the machine.

    python check_wheel.py WHEEL [--forbid PATH ...]

Fails (exit 1, one line per problem) unless:
- the platform tag is a manylinux one and the Python tag is a single CPython version;
- both extensions are there (gopool/_gobind/_core and gopool/_channel) for that version,
  with the generated modules and the license, and no C or Go sources;
- no extension has an RPATH or RUNPATH, and each needs only glibc's own libraries;
- no file of the wheel contains a path of the build machine: the --forbid paths plus
  the ones found here (this checkout, $HOME, the interpreters' prefixes, the Go tree,
  module cache and build cache, the temporary directory).

Needs pyelftools (a dependency of auditwheel).
"""

import argparse
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import zipfile

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GLIBC_LIBS = {"libc.so.6", "libpthread.so.0", "libdl.so.2", "libm.so.6", "librt.so.1"}
WHEEL_NAME = re.compile(r"^gopool-(?P<version>[^-]+)-(?P<py>cp3\d+)-(?P<abi>cp3\d+)-(?P<plat>[^-]+)\.whl$")


def machine_paths(extra=()):
    """Absolute paths of this machine that must not appear in a wheel built here."""
    paths = {ROOT, os.path.expanduser("~"), sys.prefix, sys.base_prefix, tempfile.gettempdir(),
             sysconfig.get_paths()["include"]}
    try:
        out = subprocess.run(["go", "env", "GOROOT", "GOPATH", "GOMODCACHE", "GOCACHE"],
                             capture_output=True, text=True, check=True).stdout
        paths.update(line for line in out.splitlines() if line)
    except (OSError, subprocess.CalledProcessError):
        pass
    paths.update(extra)
    # A path too general to say which machine it comes from would only match noise.
    generic = {"/", "/usr", "/usr/local", "/opt", "/home"}
    return sorted(p.rstrip("/") + "/" for p in paths if p and p.rstrip("/") not in generic)


def check(wheel, forbid):
    problems = []
    name = os.path.basename(wheel)
    m = WHEEL_NAME.match(name)
    if not m:
        return ["%s: not a gopool CPython wheel name" % name]
    if m["py"] != m["abi"]:
        problems.append("%s: python tag %s with abi %s" % (name, m["py"], m["abi"]))
    plats = m["plat"].split(".")
    if not all(p.startswith("manylinux") for p in plats):
        problems.append("%s: platform tag %s is not manylinux" % (name, m["plat"]))
    minor = m["py"][3:]
    arch = re.sub(r"^manylinux(_\d+_\d+|\d+)_", "", plats[0])
    suffix = ".cpython-3%s-%s-linux-gnu.so" % (minor, arch)
    needles = [p.encode() for p in forbid]
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = "gopool-%s.dist-info/" % m["version"]
        expected = ["gopool/__init__.py", "gopool/_gobind/__init__.py", "gopool/_gobind/go.py",
                    "gopool/_gobind/pybind.py", "gopool/_gobind/_core" + suffix,
                    "gopool/_channel" + suffix, dist_info + "METADATA", dist_info + "RECORD"]
        problems += ["%s: missing %s" % (name, e) for e in expected if e not in names]
        if not any(n.startswith(dist_info) and n.endswith("LICENSE") for n in names):
            problems.append("%s: no LICENSE in %s" % (name, dist_info))
        libs = [n for n in names if n.endswith(".so") or ".so." in n]
        extra = sorted(set(libs) - set(expected))
        if extra:
            problems.append("%s: unexpected shared objects %s" % (name, ", ".join(extra)))
        sources = [n for n in names if n.endswith((".c", ".h", ".go"))]
        if sources:
            problems.append("%s: sources in the wheel: %s" % (name, ", ".join(sources)))
        for member in names:
            data = zf.read(member)
            for needle in needles:
                if needle in data:
                    problems.append("%s: %s contains the build path %s" % (name, member, needle.decode()))
            if member in libs:
                problems += ["%s: %s" % (member, p) for p in check_elf(zf, member)]
    return problems


def check_elf(zf, member):
    with zf.open(member) as raw, tempfile.TemporaryFile() as f:
        f.write(raw.read())
        f.seek(0)
        elf = ELFFile(f)
        problems = []
        for section in elf.iter_sections():
            if not isinstance(section, DynamicSection):
                continue
            for tag in section.iter_tags():
                if tag.entry.d_tag in ("DT_RPATH", "DT_RUNPATH"):
                    problems.append("has %s %s" % (tag.entry.d_tag, getattr(tag, "runpath", None) or
                                                   getattr(tag, "rpath", "")))
                elif tag.entry.d_tag == "DT_NEEDED" and tag.needed not in GLIBC_LIBS:
                    problems.append("needs %s (not part of glibc)" % tag.needed)
        if elf.get_section_by_name(".debug_info") is not None:
            problems.append("has debug info")
        return problems


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wheels", nargs="+")
    ap.add_argument("--forbid", action="append", default=[], help="another path that must not appear")
    args = ap.parse_args(argv)
    forbid = machine_paths(args.forbid)
    problems = []
    for wheel in args.wheels:
        problems += check(wheel, forbid)
    for p in problems:
        print("check_wheel: " + p)
    if not problems:
        print("check_wheel: %d wheel(s) clean (no RPATH/RUNPATH, glibc only, none of %d build paths)"
              % (len(args.wheels), len(forbid)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
