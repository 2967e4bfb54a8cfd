"""Print the README's Quick start, so CI runs exactly what a new user is told to run.

    python .ci/quickstart.py install    # the one install line
    python .ci/quickstart.py commands   # the two commands, one per line
"""

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def quick_start() -> tuple[str, list[str]]:
    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```[a-z]*\n(.*?)```", section, flags=re.S)
    if len(blocks) != 2:
        raise SystemExit(f"README Quick start: expected an install block and a commands block, found {len(blocks)}")
    install = [ln.split("#", 1)[0].strip() for ln in blocks[0].splitlines() if ln.split("#", 1)[0].strip()]
    commands = [ln.strip() for ln in blocks[1].splitlines() if ln.strip()]
    if len(install) != 1 or len(commands) != 2:
        raise SystemExit(f"README Quick start: expected 1 install line and 2 commands, got {install} and {commands}")
    return install[0], commands


if __name__ == "__main__":
    install, commands = quick_start()
    print(install if sys.argv[1:] == ["install"] else "\n".join(commands))
