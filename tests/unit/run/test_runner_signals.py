"""A signal during the playbook stops it, removes the run dir (keys) and exits as the signal says.

Real ansible-playbook, real signals: the host is a socket on 127.0.0.1 that accepts and never
answers, so the play is busy (waiting for the SSH banner) when the signal comes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

CHILD = textwrap.dedent("""
    import sys
    from nvmeofctl.run.runner import run_playbook
    port = int(sys.argv[1])
    host = {"ansible_host": "127.0.0.1", "ansible_port": port, "ansible_python_interpreter": "/usr/bin/python3",
            "nvmeofctl_nvme_host": {"hostnqn": "nqn.2014-08.org.nvmexpress:uuid:f4a3064a-a702-4134-ab62-ed4d001ffe8b",
                                    "hostid": "f4a3064a-a702-4134-ab62-ed4d001ffe8b", "connections": [
                {"subsysnqn": "nqn.2024-01.io.x:a", "transport": "tcp", "traddr": "10.9.0.1", "trsvcid": "4420",
                 "dhchap_secret": "DHHC-1:01:+Xoos2iDZZi3X2WV4wjk0sxdPHyYCnAq/aUCMnojytKVzPTD:"}]}}
    inv = {"all": {"children": {"gpu_nodes": {"hosts": {"gpu1": host}}, "targets": {"hosts": {}}}}}
    run_playbook("site.yml", inv)
    print("finished")
""")
KEY = "+Xoos2iDZZi3X2WV4wjk0sxdPHyYCnAq"


def _files_with_key(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_signal_cancels_the_playbook_and_removes_the_run_dir(tmp_path, sig):
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), HOME=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(silent.getsockname()[1])], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = runtime / "nvmeofctl" / "runs"
    try:
        deadline = time.monotonic() + 120
        # the key is there while it runs (ansible-runner writes the run dir file by file: under
        # load the inventory can appear before the file holding the key)
        while time.monotonic() < deadline and not any(_files_with_key(d) for d in runs.glob("run-*")):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        run_dir = next(runs.glob("run-*"))
        assert _files_with_key(run_dir)
        time.sleep(2)  # ansible-playbook is waiting for the SSH banner now
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        silent.close()
    # SIGINT ends as KeyboardInterrupt (python re-raises the signal; the CLI maps it to exit 130)
    expected = -signal.SIGINT if sig == signal.SIGINT else 128 + sig
    assert proc.returncode == expected, (proc.returncode, err[-2000:])
    assert "finished" not in out
    assert not run_dir.exists() and not _files_with_key(runtime)
    # the playbook was stopped too, not left running without its inventory (its processes may
    # take a moment to exit on a loaded machine)
    deadline = time.monotonic() + 30
    while True:
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        if str(run_dir) not in ps or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert str(run_dir) not in ps, [line for line in ps.splitlines() if str(run_dir) in line]
