"""Subprocesses a test module starts before any test runs, each awaited by the test that checks it.

Most of such a process's life is importing torch. Started when the session starts (conftest runs a module's
`start_early()` once its tests are collected), they run on the second core while the tests before theirs run
on the first, and their tests find them finished. They run at a lower priority: the in-process tests keep their
core, and the background takes what is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

# CPU weight about a tenth of the in-process tests' (nice 0), so they barely slow those down.
BACKGROUND_NICENESS = 10
# The ros and e2e tiers' runs (nodes that must fail, demos, benches, build routes): the lowest priority. They have the
# unit tier and the ros tier's idle core to finish in, and some twenty of them at nice 10 took the unit tier's
# process a third of its core.
LAST_TIERS_NICENESS = 19

# Runs the steps (JSON, argv[1]) one after another and prints each one's result; the first that fails ends the chain.
_CHAIN = """
import json, subprocess, sys
results = {}
for step in json.loads(sys.argv[1]):
    run = subprocess.run(step["args"], cwd=step["cwd"], env=step["env"], capture_output=True, text=True)
    results[step["name"]] = [run.returncode, run.stdout, run.stderr]
    if run.returncode:
        break
print(json.dumps(results))
"""


class Background:
    """Named subprocesses with their output, and what to close once the session ends."""

    def __init__(self, niceness: int = BACKGROUND_NICENESS) -> None:
        self.niceness = niceness
        self._directory = tempfile.TemporaryDirectory(prefix="clipseg_background_")
        self.directory = Path(self._directory.name)
        self.processes: dict[str, subprocess.Popen] = {}
        self._results: dict[str, subprocess.CompletedProcess] = {}
        self._closers: list[Callable[[], None]] = []

    def start(self, name: str, args: list[str], **popen_args) -> None:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_args)
        os.setpriority(os.PRIO_PROCESS, process.pid, self.niceness)
        self.processes[name] = process

    def result(self, name: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """The process's exit code and output, once it has ended (several tests may read one process)."""
        if name not in self._results:
            process = self.processes[name]
            stdout, stderr = process.communicate(timeout=timeout)
            self._results[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        return self._results[name]

    def start_chain(self, name: str, steps: list[dict]) -> None:
        """Commands that need each other's work, one after another in one background process. Each step:
        {"name", "args", "cwd", "env" (None: this process's)}."""
        self.start(name, [sys.executable, "-c", _CHAIN, json.dumps(steps)])

    def chain_result(self, name: str, timeout: float = 300.0) -> dict[str, subprocess.CompletedProcess]:
        """Each step's result by its name, up to the first that failed."""
        done = self.result(name, timeout)
        assert done.returncode == 0, done.stderr
        return {step: subprocess.CompletedProcess(step, code, stdout, stderr)
                for step, (code, stdout, stderr) in json.loads(done.stdout).items()}

    def close_at_end(self, closer: Callable[[], None]) -> None:
        """`closer` runs when the session ends (a server the processes talk to)."""
        self._closers.append(closer)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
            process.communicate()
        for closer in self._closers:
            closer()
        self._directory.cleanup()
