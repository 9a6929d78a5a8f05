"""A real one-node Slurm (slurmctld + slurmd, Debian's slurm-wlm) and munge on this machine, for
the cluster tests: a config written to a temporary folder, daemons started as root and stopped by
their pid files, whatever happens to the tests.

The node has the machine's CPUs and two GPUs as generic resources backed by character devices
with /dev/null's numbers (Slurm hands out CUDA_VISIBLE_DEVICES by device file; nothing opens them), so an element
asking for `--gres=gpu:1` gets its own index as it would on a GPU node.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

MAX_ARRAY_SIZE = 8  # small, so a dozen tasks need two arrays
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")


def _daemon(name: str) -> str:
    """A daemon's path: /usr/sbin may be off a non-login root's PATH."""
    return shutil.which(name) or str(Path("/usr/sbin", name))


def missing() -> str | None:
    """Why a local Slurm cannot start here, or None."""
    for tool in ("slurmctld", "slurmd", "munged"):
        if not Path(_daemon(tool)).exists():
            return f"{tool} not found (`make cluster-tools` installs slurm-wlm and munge)"
    if shutil.which("sbatch") is None:
        return "sbatch not found (`make cluster-tools` installs slurm-wlm)"
    if os.geteuid() != 0:
        return "a local Slurm runs its daemons as root"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _memory_mb() -> int:
    """A little under the free memory, so slurmd does not drain the node for lying."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(int(line.split()[1]) / 1024 * 0.8)
    return 2048


class LocalSlurm:
    def __init__(self, root: Path):
        self.root = root
        self.host = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._munged: int | None = None

    def write_config(self) -> None:
        for sub in ("state", "spool", "devices"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        devices = [self.root / "devices" / f"nvidia{i}" for i in range(2)]
        for device in devices:  # /dev/null's numbers: Slurm checks the type, nothing opens them
            if not device.exists():
                os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        root = self.root
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=local",
                    f"SlurmctldHost={self.host}",
                    "SlurmUser=root",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    f"StateSaveLocation={root}/state",
                    f"SlurmdSpoolDir={root}/spool",
                    f"SlurmctldPidFile={root}/slurmctld.pid",
                    f"SlurmdPidFile={root}/slurmd.pid",
                    f"SlurmctldLogFile={root}/slurmctld.log",
                    f"SlurmdLogFile={root}/slurmd.log",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "JobCompType=jobcomp/filetxt",
                    f"JobCompLoc={root}/jobcomp.txt",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    f"MaxArraySize={MAX_ARRAY_SIZE}",
                    "ReturnToService=2",
                    "KillWait=5",
                    "MinJobAge=600",
                    "SchedulerParameters=sched_interval=2",
                    "GresTypes=gpu",
                    f"NodeName={self.host} CPUs={os.cpu_count()} RealMemory={_memory_mb()} "
                    "Gres=gpu:2 State=UNKNOWN",
                    f"PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        (root / "gres.conf").write_text(
            f"NodeName={self.host} Name=gpu File={root}/devices/nvidia[0-1]\n"
        )

    def start(self) -> None:
        self.write_config()
        self._start_munge()
        subprocess.run([_daemon("slurmctld"), "-f", str(self.conf)], check=True, env=self.env)
        subprocess.run([_daemon("slurmd"), "-f", str(self.conf)], check=True, env=self.env)
        deadline = time.time() + 60
        while time.time() < deadline:
            state = self.run("sinfo", "-h", "-N", "-o", "%T", check=False).strip()
            if state == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"the local Slurm node never became idle (last: {state!r})")

    def _start_munge(self) -> None:
        if self._munge_answers():
            return  # a munged already runs on this machine: use it, leave it
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", _daemon("munged"), "--force"], check=True)
        pid_file = Path("/run/munge/munged.pid")
        deadline = time.time() + 10
        while not self._munge_answers() and time.time() < deadline:
            time.sleep(0.1)
        if pid_file.exists():
            self._munged = int(pid_file.read_text())

    @staticmethod
    def _munge_answers() -> bool:
        if not MUNGE_SOCKET.exists():
            return False
        probe = subprocess.run("munge -n | unmunge", shell=True, capture_output=True, text=True)
        return "Success" in probe.stdout

    def run(self, *command: str, check: bool = True) -> str:
        """A Slurm client command against this cluster; its stdout."""
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, check=check)
        return done.stdout

    def stop(self) -> None:
        """Cancel every job, then stop the daemons this cluster started, by their pid files."""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            self.run("scancel", "--user=root", check=False)
        pids = []
        for name in ("slurmd", "slurmctld"):
            with contextlib.suppress(OSError, ValueError):
                pids.append(int((self.root / f"{name}.pid").read_text()))
        if self._munged is not None:
            pids.append(self._munged)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 20
        for pid in pids:
            while time.time() < deadline and _alive(pid):
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
