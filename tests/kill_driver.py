"""Run a script as `python SCRIPT ARGS...` would, and kill -9 the process at a chosen moment.

    python tests/kill_driver.py MOMENT N SCRIPT [ARGS...]

MOMENT (the process SIGKILLs itself at the N-th occurrence, so nothing is cleaned up):

* `step`: before a training step of the policy trainer;
* `replace:<regex>`: in a file write, after the temporary file is complete and before the
  `os.replace` onto a final name matching the regex (e.g. `policy_\\d+\\.pt`);
* `checkpoint`: when a policy checkpoint is about to be written;
* `csv`: in the middle of writing a CSV row (half of it reaches the file);
* `never`: run to the end.

Used by tests/test_faults.py for real kills (a Python exception would run the writers' cleanup).
"""
from __future__ import annotations

import os
import re
import runpy
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _die(*_: Any, **__: Any) -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _on_nth(n: int, fn: Callable[..., Any], *, before: Callable[..., Any] = _die,
            when: Callable[..., bool] = lambda *a, **k: True) -> Callable[..., Any]:
    """`fn`, calling `before(*args)` instead of it at its n-th call that satisfies `when`."""
    calls = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if when(*args, **kwargs):
            calls[0] += 1
            if calls[0] == n:
                before(*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper


def _arm(moment: str, n: int) -> None:
    if moment == "never":
        return
    if moment == "step":
        from offlinerlkit.policy_trainer.mb import MBPolicyTrainer
        from offlinerlkit.policy_trainer.mf import MFPolicyTrainer

        counter = _on_nth(n, lambda f, *a, **k: f(*a, **k))  # one count for both classes

        def counted(step: Callable[..., Any]) -> Callable[..., Any]:
            return lambda self: counter(step, self)

        for cls in (MFPolicyTrainer, MBPolicyTrainer):
            cls.train_step = counted(cls.__dict__["train_step"])  # type: ignore[method-assign]
        return
    if moment.startswith("replace:"):
        pattern = re.compile(moment.split(":", 1)[1])
        os.replace = _on_nth(n, os.replace,
                             when=lambda src, dst, *a, **k: bool(pattern.search(Path(dst).name)))
        return
    if moment == "checkpoint":
        import offlinerlkit.policy_trainer.mf as mf

        mf.save_checkpoint = _on_nth(n, mf.save_checkpoint)
        return
    if moment == "csv":
        from offlinerlkit.utils import log_backends

        def half_row(self: Any, row: dict[str, float], step: int, phase: str) -> None:
            with open(self._path(phase), "a", encoding="utf-8") as f:
                f.write(f"{step},{next(iter(row.values()), 0.0)!r}"[:6])
            _die()

        log_backends.CSVBackend.write = _on_nth(n, log_backends.CSVBackend.write,
                                                before=half_row)
        return
    raise SystemExit(f"kill_driver.py: unknown moment {moment!r}")


def main() -> None:
    moment, n, script, *args = sys.argv[1:]
    _arm(moment, int(n))
    sys.argv = [script, *args]
    sys.path.insert(0, str(Path(script).resolve().parent))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
