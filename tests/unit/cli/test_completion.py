"""Shell completion (`nvmeofctl --install-completion`): what bash gets back for a partial command
line, from the installed console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "nvmeofctl"


def complete(words: str, cword: int) -> list[str]:
    env = dict(os.environ, COMP_WORDS=words, COMP_CWORD=str(cword), _NVMEOFCTL_COMPLETE="complete_bash")
    proc = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    return proc.stdout.split()


@pytest.mark.skipif(not SCRIPT.exists(), reason="the console script is installed by `make venv`")
def test_bash_completes_commands_and_choices():
    assert complete("nvmeofctl sta", 1) == ["status"]
    assert complete("nvmeofctl bench --profile ", 3) == ["training", "inference", "checkpoint", "all"]
    assert "--namespace" in complete("nvmeofctl disconnect --", 2)
    script = subprocess.run([str(SCRIPT), "--show-completion", "bash"], capture_output=True, text=True, timeout=60)
    assert script.returncode == 0 and "_nvmeofctl_completion()" in script.stdout
