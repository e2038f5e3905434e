"""Running a `run_example` script as a user would, in a fresh interpreter."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_script_without(module: str, script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `script args...` where `module` cannot be imported, as if it were not installed."""
    code = (f"import runpy, sys; sys.modules[{module!r}] = None; "
            f"sys.path.insert(0, {str(script.parent)!r}); "
            f"sys.argv = [{script.name!r}, *{list(args)!r}]; "
            f"runpy.run_path({str(script)!r}, run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
