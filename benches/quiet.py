"""Whether the machine was quiet while a benchmark measured: the benches refuse to report figures
taken while other work ran.

Two checks. Before starting, the 1-minute load average must fall to `max_load` (waiting up to
`wait_s` for it). And around each measured process, the CPU time every process on the machine
used (/proc/stat) minus the CPU time of the measured process and its children
(getrusage(RUSAGE_CHILDREN)) gives what others used meanwhile, in cores; above `max_other_cores`
the figures of that process are refused. The load average alone cannot tell during a run: the
benchmark's own threads are in it.

`python3 benches/quiet.py` measures a second of idling and a second beside a busy loop, and
prints both, as a check of the check.
"""

import os
import resource
import subprocess
import sys
import time

DEFAULT_MAX_LOAD = 0.6
DEFAULT_MAX_OTHER_CORES = 0.25


class Busy(Exception):
    """The machine was busy; the message says with what."""


def _busy_seconds():
    """CPU seconds all CPUs spent outside idle and iowait since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_seconds():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wait_until_quiet(max_load=DEFAULT_MAX_LOAD, wait_s=180):
    """Waits for the 1-minute load average to fall to max_load; Busy if it does not."""
    deadline = time.time() + wait_s
    while True:
        load = os.getloadavg()[0]
        if load <= max_load:
            return load
        if time.time() > deadline:
            raise Busy(f"the 1-minute load average is {load:.2f} (> {max_load}) after {wait_s} s: "
                       "something else runs on this machine; benchmark when it is quiet")
        time.sleep(5)


def run_quiet(cmd, env=None, max_other_cores=DEFAULT_MAX_OTHER_CORES):
    """Runs cmd (capturing stdout and stderr); Busy if other processes used more than
    max_other_cores of CPU while it ran. Returns the CompletedProcess and the others' cores."""
    busy0, own0, t0 = _busy_seconds(), _children_seconds(), time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    busy1, own1, t1 = _busy_seconds(), _children_seconds(), time.monotonic()
    # Python itself (this process) is idle meanwhile: waiting in subprocess.run.
    others = max(0.0, (busy1 - busy0) - (own1 - own0)) / max(t1 - t0, 1e-9)
    if others > max_other_cores:
        raise Busy(f"other processes used {others:.2f} cores while `{os.path.basename(cmd[0])}` measured "
                   f"(> {max_other_cores}); its figures are not reported")
    return proc, others


if __name__ == "__main__":
    quiet = [sys.executable, "-c", "import time; time.sleep(1)"]
    _, idle = run_quiet(quiet, max_other_cores=float("inf"))
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        _, loaded = run_quiet(quiet, max_other_cores=float("inf"))
    finally:
        spinner.kill()
    print(f"others' cores: idle {idle:.2f}, beside a busy loop {loaded:.2f}")
    if not loaded > idle + 0.5:
        sys.exit("the busy loop was not seen: the check cannot tell a busy machine")
