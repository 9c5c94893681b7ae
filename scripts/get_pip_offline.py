"""Offline stand-in for ansible-test's pip bootstrap script (get-pip.py).

ansible-test creates empty virtual environments for some sanity tests and bootstraps pip in them with a script it
downloads from a host that these machines cannot reach. This does the same job with the pip wheel that CPython
bundles (ensurepip): put the wheel on sys.path and run `pip install --upgrade --force-reinstall <args>`, where the
arguments (pip==X, setuptools==Y, ...) come from ansible-test and are fetched from PyPI as usual.
"""
import ensurepip
import glob
import os
import sys

wheels = sorted(glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl")))
if not wheels:
    sys.exit("no bundled pip wheel found in ensurepip")
sys.path.insert(0, wheels[-1])

from pip._internal.cli.main import main

# get-pip.py's own flags: it would otherwise add setuptools and wheel; ansible-test names its packages itself.
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall"] + args))
