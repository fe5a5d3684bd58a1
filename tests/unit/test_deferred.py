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


METADATA_PROBE = """
import json, sys
import remediate
import importlib.metadata as stand_in
seen = {"stood_in": type(stand_in).__name__, "version": stand_in.version("paramiko")}
seen["email_then"] = "email" in sys.modules
try:
    stand_in.version("zq-no-such-package")
except Exception as e:
    seen["missing"] = type(e).__name__
import importlib.metadata as real
seen["real"] = type(real).__name__ == "module" and real is sys.modules["importlib.metadata"]
seen["same"] = real.version("paramiko") == seen["version"] and stand_in.version("paramiko") == seen["version"]
seen["eps"] = stand_in.entry_points(group="console_scripts") == real.entry_points(group="console_scripts")
print(json.dumps(seen))
"""


def test_importlib_metadatas_stand_in_answers_a_version_and_hands_the_rest_to_the_real_module() -> None:
    done = subprocess.run([sys.executable, "-c", METADATA_PROBE], capture_output=True, text=True, timeout=60,
                          check=True)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"stood_in": "_Metadata", "version": seen["version"], "email_then": False,
                    "missing": "PackageNotFoundError", "real": True, "same": True, "eps": True}
