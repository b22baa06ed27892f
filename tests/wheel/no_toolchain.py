"""An environment in which no Go and no C compiler can be found on PATH.

PATH becomes a venv's bin directory plus a directory of symlinks to every other
program on the current PATH: `go`, `gofmt`, `zig`, `gcc`, `cc`, `cpp`, `ld`, `as` and
their relatives (x86_64-linux-gnu-gcc-12, clang-16...) are left out. This is what a
user who installs gopool from a wheel has: a Python, the usual tools, no toolchain.
"""

import os
import re
import shutil

TOOLCHAIN = re.compile(
    r"^(go|gofmt|zig|tcc|cc|c\+\+|c89|c99|as|ld(\..*)?|"
    r"(.*-)?(gcc|g\+\+|gccgo|clang|clang\+\+|cpp|ld|as)(-[\d.]+)?)$")
MUST_NOT_RESOLVE = ("go", "gofmt", "gcc", "cc", "c++", "g++", "cpp", "clang", "zig", "ld")


def environment(bin_dir, venv, base=None):
    """A copy of the environment whose PATH is venv/bin plus bin_dir (rebuilt here)."""
    env = dict(os.environ if base is None else base)
    shutil.rmtree(bin_dir, ignore_errors=True)
    os.makedirs(bin_dir)
    for d in env.get("PATH", "").split(os.pathsep):
        if not d or not os.path.isdir(d) or os.path.abspath(d).startswith(os.path.abspath(venv)):
            continue
        for name in sorted(os.listdir(d)):
            src = os.path.join(d, name)
            link = os.path.join(bin_dir, name)
            if (TOOLCHAIN.match(name) or os.path.lexists(link) or os.path.isdir(src)
                    or not os.access(src, os.X_OK)):
                continue
            os.symlink(src, link)
    env["PATH"] = os.pathsep.join([os.path.join(venv, "bin"), bin_dir])
    for var in ("PYTHONPATH", "PYTHONHOME", "GOROOT", "CC", "CXX", "VIRTUAL_ENV"):
        env.pop(var, None)
    found = {t: shutil.which(t, path=env["PATH"]) for t in MUST_NOT_RESOLVE}
    found = {t: p for t, p in found.items() if p}
    if found:
        raise RuntimeError("toolchain still on PATH: %s" % found)
    return env
