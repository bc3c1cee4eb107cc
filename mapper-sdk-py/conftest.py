"""Generates the bindings of Ferrule's WIT world (`wit_world`) with componentize-py for the
tests that run natively, and puts them, the package and the example on the path."""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
WIT = os.path.join(HERE, "..", "wit")

_bindings = tempfile.mkdtemp(prefix="ferrule-wit-world-")
atexit.register(shutil.rmtree, _bindings, ignore_errors=True)
subprocess.run(
    [sys.executable, "-c", "import sys; from componentize_py import script; "
     "sys.argv[0] = 'componentize-py'; sys.exit(script())",
     "-d", WIT, "-w", "mapper", "bindings", _bindings],
    check=True,
)
for path in (_bindings, HERE, os.path.join(HERE, "examples", "kv"),
             os.path.join(HERE, "examples", "reshape")):
    sys.path.insert(0, path)
