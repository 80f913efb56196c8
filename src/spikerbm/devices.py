"""Which GPU a job uses: one free GPU per job on a workstation with several.

Snakemake (9.x) caps how many GPU jobs run at once (each GPU rule asks for ``gpu=1``; the
workstation profile, or ``--resources gpu=N``, sets how many may run together) but does not say
which GPU a job should take, so every job would open ``cuda:0`` (snakemake/snakemake#281). Each
GPU job therefore claims a GPU itself when it first resolves its device
(:func:`spikerbm.rbm.resolve_device`): it takes an exclusive lock (``fcntl.flock``) on a file
named after the GPU's UUID in a machine-local folder (:data:`LOCK_DIR_ENV`, default
``<tmp>/spikerbm-gpu-locks``) and uses the first GPU whose lock it gets, for the rest of the
process. The operating system drops the lock when the process ends, however it ends (a
``kill -9`` included), so a crashed job never leaves a stale claim, and jobs of several
workflows, or users, on one machine see each other's claims. Locks are named by UUID, not by
index, so jobs that see different GPU subsets (``CUDA_VISIBLE_DEVICES``, a SLURM allocation)
never collide by index. We wrote this because no library we know assigns GPUs to the jobs of a
Snakemake run on one machine (SLURM does it per job; it needs no lock, and takes none when a job
sees one GPU).

When every visible GPU is already claimed (more GPU jobs allowed at once than there are GPUs),
the job uses GPU 0 together with its holder and logs a warning saying how to set the limit,
rather than wait: results are the same, only slower.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

log = logging.getLogger(__name__)

#: Environment variable naming the folder of the per-GPU lock files (machine-local).
LOCK_DIR_ENV = "SPIKERBM_GPU_LOCK_DIR"

#: The device this process claimed, and the open lock file that holds the claim.
_claim: dict[str, object] = {}


def lock_dir() -> Path:
    """The folder of the lock files: ``$SPIKERBM_GPU_LOCK_DIR`` or ``<tmp>/spikerbm-gpu-locks``."""
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir(), "spikerbm-gpu-locks"))


def claim(ids: Sequence[str], folder: str | os.PathLike) -> int | None:
    """Take the lock of the first GPU in ``ids`` that no other process holds.

    Parameters
    ----------
    ids
        Stable identifiers of the visible GPUs, in device-index order (UUIDs).
    folder
        Where the lock files live (created, world-writable with the sticky bit, as ``/tmp``).

    Returns
    -------
    int or None
        The index into ``ids`` of the claimed GPU (its lock stays held until this process
        ends), or ``None`` when every lock is held by another process.
    """
    folder = Path(folder)
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        try:
            folder.chmod(0o1777)  # shared by every user's jobs, like /tmp
        except OSError:
            pass
    for index, ident in enumerate(ids):
        name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(ident))
        fd = os.open(folder / f"gpu-{name}.lock", os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _claim["fd"] = fd  # kept open: closing it would release the claim
        return index
    return None


def _gpu_ids() -> list[str]:
    """UUIDs of the visible CUDA devices (PCI bus ids, then indices, where torch lacks them)."""
    if torch.cuda.device_count() <= 1:
        return ["0"] * torch.cuda.device_count()
    ids = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        uuid = getattr(props, "uuid", None)
        bus = getattr(props, "pci_bus_id", None)
        ids.append(str(uuid) if uuid is not None else (
            f"pci-{getattr(props, 'pci_domain_id', 0)}-{bus}-{getattr(props, 'pci_device_id', 0)}"
            if bus is not None else f"index-{os.environ.get('CUDA_VISIBLE_DEVICES', '')}-{i}"))
    return ids


def select(ids: Sequence[str], folder: str | os.PathLike) -> int:
    """The GPU index a job uses among the visible GPUs ``ids``: the only one, or the first
    free one (claimed by :func:`claim`), or GPU 0 shared when all are claimed (logged)."""
    if len(ids) <= 1:
        return 0
    try:
        got = claim(ids, folder)
    except OSError as err:
        log.warning("cannot take a GPU lock in %s (%s): using GPU 0; set %s to a writable "
                    "machine-local folder", folder, err, LOCK_DIR_ENV)
        return 0
    if got is None:
        log.warning("all %d visible GPUs are claimed by other spikerbm jobs (locks in %s): "
                    "sharing GPU 0; allow at most %d GPU jobs at once (--resources gpu=%d)",
                    len(ids), folder, len(ids), len(ids))
        return 0
    log.info("claimed GPU %d of %d (%s; lock in %s)", got, len(ids), ids[got], folder)
    return got


def cuda_device() -> torch.device:
    """This process's CUDA device (:func:`select` over the visible GPUs, see the module
    docstring), made the current device; the same device on every call.

    Raises
    ------
    RuntimeError
        When torch sees no CUDA device.
    """
    if "device" not in _claim:
        if torch.cuda.device_count() == 0:
            raise RuntimeError("torch sees no CUDA device")
        device = torch.device("cuda", select(_gpu_ids(), lock_dir()))
        torch.cuda.set_device(device)
        _claim["device"] = device
    return _claim["device"]  # type: ignore[return-value]
