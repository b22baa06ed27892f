"""Run the test suite against an installed wheel, as a user without Go or a C compiler has it.

    run_suite.py --python python3 --dist dist --min-tests 100 [--deps "pytest ..."]
    run_suite.py --installed --min-tests 100     (cibuildwheel's test-command)

1. takes the one gopool wheel in --dist for that interpreter's CPython version;
2. makes a fresh venv, installs the wheel's runtime dependencies and the test tools from
   the index, then the wheel itself with --no-index;
3. copies tests/ to a temporary directory outside the source tree and, with a PATH on
   which no go, gcc or cc resolves (no_toolchain.py), runs smoke.py, then pytest;
4. fails unless check_results.py agrees: no failure, no skip, at least --min-tests tests.

With --installed, steps 1-2 are skipped: the running interpreter's environment already
has gopool and the test tools (cibuildwheel's test venv).
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)
sys.path.insert(0, HERE)
import no_toolchain  # noqa: E402


def run(cmd, **kw):
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, **kw)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default="python3")
    ap.add_argument("--dist", default=os.path.join(ROOT, "dist"))
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "wheel-test"))
    ap.add_argument("--min-tests", type=int, default=100)
    ap.add_argument("--deps", default="pytest pytest-timeout ipython uvloop tqdm nbclient nbformat ipykernel ipywidgets dask parmap distributed==2026.8.0 cryptography==50.0.2 mypy==2.4.1", help="test tools, from the index")
    ap.add_argument("--pytest-args", default="-q -p no:cacheprovider -ra")
    ap.add_argument("--installed", action="store_true", help="test this interpreter's gopool")
    args = ap.parse_args()
    if args.installed:
        work = tempfile.mkdtemp(prefix="gopool-wheel-test-")
        try:
            test_installed(sys.prefix, sys.executable, work, args)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return

    import build_wheels  # needs pyelftools (the tools venv): not for --installed
    python = shutil.which(args.python) or args.python
    minor = build_wheels.python_version(python)
    if minor is None:
        sys.exit("run_suite: %s does not run" % args.python)
    tag = "cp" + minor.replace(".", "")
    wheels = glob.glob(os.path.join(os.path.abspath(args.dist), "gopool-*-%s-%s-*.whl" % (tag, tag)))
    if len(wheels) != 1:
        sys.exit("run_suite: expected one gopool %s wheel in %s, found %d (run make wheel)"
                 % (tag, args.dist, len(wheels)))
    wheel = wheels[0]
    print("run_suite: %s on CPython %s" % (os.path.basename(wheel), minor), flush=True)

    work = os.path.abspath(args.work)
    venv = os.path.join(work, "venv")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    run([python, "-m", "venv", venv], check=True)
    vpy = os.path.join(venv, "bin", "python")
    pip = [vpy, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run(pip + build_wheels.runtime_requirements(wheel) + args.deps.split(), check=True)
    run(pip + ["--no-index", wheel], check=True)

    test_installed(venv, vpy, work, args, os.path.basename(wheel))


def test_installed(venv, vpy, work, args, what="gopool"):
    """smoke.py, then the suite, from a copy of tests/ outside the tree, with no toolchain."""
    env = no_toolchain.environment(os.path.join(work, "no-toolchain-bin"), venv)
    tmp = tempfile.mkdtemp(prefix="gopool-wheel-suite-")
    try:
        tests = os.path.join(tmp, "tests")
        shutil.copytree(TESTS, tests, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"))
        examples = os.path.join(os.path.dirname(TESTS), "examples")
        if os.path.isdir(examples):  # tests/test_examples.py runs them
            shutil.copytree(examples, os.path.join(tmp, "examples"))
        run([vpy, os.path.join(tests, "wheel", "smoke.py")], env=env, cwd=tmp, check=True)
        junit = os.path.join(work, "junit.xml")
        rc = run([vpy, "-m", "pytest"] + args.pytest_args.split() + ["--junitxml=" + junit, "."],
                 env=env, cwd=tests).returncode
        checked = run([vpy, os.path.join(tests, "check_results.py"), junit, str(args.min_tests)],
                      env=env).returncode
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if rc or checked:
        sys.exit("run_suite: the suite failed against %s (pytest exit %d)" % (what, rc))
    # On success check_results.py's "N passed, N failed, N skipped" stays the last line.


if __name__ == "__main__":
    main()
