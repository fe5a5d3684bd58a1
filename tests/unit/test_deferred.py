"""invoke's stand-in (remediate.deferred): paramiko does not load invoke at start-up, and every other importer of
invoke (fabric's `import invoke.config`, find_spec, a version check) gets the real module as if nothing stood in."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys, importlib.util
import remediate, paramiko
seen = {"loaded_by_paramiko": any(m.startswith("invoke.") for m in sys.modules)}
seen["spec"] = importlib.util.find_spec("invoke").name
seen["still_deferred"] = not any(m.startswith("invoke.") for m in sys.modules)
import invoke.config
seen["config"] = invoke.config.__name__
seen["version"] = bool(sys.modules["invoke"].__version__) and bool(paramiko.config.invoke.__version__)
seen["same_run"] = paramiko.config.invoke.run is sys.modules["invoke"].run
print(json.dumps(seen))
"""


def test_other_importers_of_invoke_get_the_real_module() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "loaded_by_paramiko": False, "spec": "invoke", "still_deferred": True, "config": "invoke.config",
        "version": True, "same_run": True}
