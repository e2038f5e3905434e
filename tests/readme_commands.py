"""The shell commands of README.md's ```bash blocks, for the tests and for `.ci/run`.

`.ci/run` runs the set-up and test commands exactly as written there:

    python tests/readme_commands.py Set-up      # prints the set-up block's lines
    python tests/readme_commands.py Tests       # prints the test command
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Optional

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_lines(section: Optional[str] = None, text: Optional[str] = None) -> list[str]:
    """The non-empty lines of the ```bash blocks, of the whole README or of one `## section`."""
    text = README.read_text(encoding="utf-8") if text is None else text
    if section is not None:
        parts = re.split(r"^## ", text, flags=re.M)
        matches = [p for p in parts[1:] if p.splitlines()[0].strip() == section]
        if len(matches) != 1:
            raise ValueError(f"README.md has {len(matches)} sections named '## {section}', not one")
        text = matches[0]
    blocks = re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)
    return [ln.strip() for block in blocks for ln in block.splitlines() if ln.strip()]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/readme_commands.py SECTION   (e.g. Set-up, Tests)")
    lines = readme_lines(sys.argv[1])
    if not lines:
        sys.exit(f"README.md's '## {sys.argv[1]}' section has no ```bash block")
    print("\n".join(lines))
