"""A trained RBM as a Python object: load, sample (Gibbs or PTT, with clamped neurons), score,
conditional activity, effective couplings, parameters as xarray.

::

    import spikerbm
    model = spikerbm.load_model("results/synth-a/selected.nc")        # or hidden~48/model.nc
    gen = model.sample(1000, sweeps=2000, seed=1)    # xarray: samples(sample, neuron)
    score = model.log_likelihood("results/synth-a/raster.nc", split="test")
    cond = model.sample(500, sweeps=1000, clamp={1003: 1, 1007: 0})   # neurons by unit id
    J = model.couplings(neurons=["A1"], order=2)                      # an area, or unit ids

Files: only netCDF files written by this project are loaded (``model.nc``: a training
trajectory with every checkpoint; ``selected.nc``: the selected model; also a ``model.nc``
made by ``spikerbm import`` from an rbms archive). They are read with the netCDF4 engine (plain
numeric arrays and text attributes; nothing is unpickled or evaluated) and checked
(:func:`spikerbm.rbm.check_rbm_dataset`, the provenance attribute ``spikerbm_version``).

Units: states are 0/1 per bin (visible unit ``i`` = neuron ``i``, identified by ``unit_id``);
energies, free energies and ``log Z`` are in nats (units of k_B T); log-likelihoods in nats per
sample (per bin); couplings are dimensionless (energies in k_B T, Ising variables
``s = 2v - 1``, docs/methods.md §6).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from spikerbm import io
from spikerbm.partition import LogZEstimate, estimate_log_z, exact_log_z
from spikerbm.provenance import derive_seed
from spikerbm.rbm import RBM, check_rbm_dataset, free_energy, rbm_from_numpy, resolve_device
from spikerbm.sampling import Sampler

__all__ = ["Model", "Score", "load_model", "primary_replica", "replica_attrs", "with_replica_dim"]

log = logging.getLogger(__name__)

#: Largest smaller layer for which the API computes log Z exactly when none is stored.
EXACT_LOG_Z_UNITS = 20
#: Most 3-body couplings :meth:`Model.couplings` returns (order 3 lists every i<j<k).
MAX_TRIPLETS = 5_000_000
SAMPLERS = ("gibbs", "ptt")


def with_replica_dim(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with a ``replica`` dimension: unchanged when it has one, else a length-1
    ``replica`` dim (coordinate ``[0]``) on every variable that has ``neuron``, ``hidden``,
    ``checkpoint`` or ``eval`` among its dims (an R = 1 file, written without the dim;
    docs/data-model.md, "Replicas").

    Readers of ``model.nc``, ``loglik.nc`` and ``selected.nc`` normalise with this so that the
    code downstream has one path for R = 1 and R > 1.
    """
    if "replica" in ds.dims:
        return ds
    axes = {"neuron", "hidden", "checkpoint", "eval"}
    out = ds.copy()
    for name in list(out.data_vars):
        if axes & set(out[name].dims):
            out[name] = out[name].expand_dims(replica=1)
    return out.assign_coords(replica=("replica", np.array([0], dtype=np.int64)))


def primary_replica(ds: xr.Dataset) -> xr.Dataset:
    """The replica of ``selected.nc`` that statistics and dynamics use (attr
    ``primary_replica``: replica 0, or the best live one when 0 was dropped), without the
    ``replica`` dim; a dataset without that dim (R = 1) is returned unchanged."""
    if "replica" not in ds.dims:
        return ds
    r = int(ds.attrs.get("primary_replica", int(ds["replica"].values[0])))
    return ds.sel(replica=r, drop=True)


def replica_attrs(ds: xr.Dataset, replica: int) -> dict[str, Any]:
    """The attributes of one replica of a ``model.nc``: the shared attrs plus that replica's
    per-replica values (the 0-d entries of its variables on ``replica`` alone, e.g.
    ``stop_reason``, ``still_improving``), as a single-model file has them; a file without a
    ``replica`` dim gives its attrs. A replica not in the file (dropped from another size)
    falls back to the first live one."""
    attrs = dict(ds.attrs)
    if "replica" not in ds.dims:
        return attrs
    reps = [int(r) for r in ds["replica"].values]
    if "diverged" in ds:
        reps = [r for r, d in zip(reps, ds["diverged"].values, strict=True) if not d] or reps
    one = ds.sel(replica=replica if replica in reps else reps[0])
    attrs.update({k: one[k].values.item() for k in one.data_vars if one[k].ndim == 0
                  and ds[k].dims == ("replica",)})
    return attrs


class ModelFileError(io.InputError):
    """A file that is not a model written by spikerbm, or a checkpoint it does not hold."""


@dataclass(frozen=True)
class Score:
    """Log-likelihood of a raster under a model (:meth:`Model.log_likelihood`).

    Attributes
    ----------
    ll
        ``-<E(v)>_data - log Z``, nats per sample (bin).
    ll_std
        1-sigma uncertainty of ``ll``, nats per sample: that of ``log Z`` (the data term is
        exact); 0 for exact ``log Z``, NaN when the estimate carries none.
    ll_per_neuron
        ``ll / n_neurons``, nats per neuron per sample.
    log_z, log_z_std, log_z_method
        The log partition function used (nats), its 1-sigma uncertainty and how it was
        obtained (``exact``, ``ais``, ``tais``; ``stored`` values keep the method that made
        them).
    n_samples, n_neurons
        Size of the scored raster.
    """

    ll: float
    ll_std: float
    ll_per_neuron: float
    log_z: float
    log_z_std: float
    log_z_method: str
    n_samples: int
    n_neurons: int

    def as_dict(self) -> dict[str, float | int | str]:
        return dict(self.__dict__)


def load_model(path: str | os.PathLike, checkpoint: str | int = "selected", *,
               device: str = "cpu") -> Model:
    """Load a trained RBM written by this project.

    Parameters
    ----------
    path
        ``selected.nc`` (the selected model) or ``hidden~{n}/model.nc`` (a training trajectory:
        every checkpoint), or a ``model.nc`` made by ``spikerbm import``.
    checkpoint
        Which parameters, in training updates:

        - ``"selected"`` (default): for ``selected.nc`` its model; for ``model.nc`` the
          checkpoint that model selection picked for this hidden size (the candidate table of
          ``../selected.nc`` beside it), else ``"best"``;
        - ``"best"``: the best online test log-likelihood (attribute ``best_update``), else
          the best test LL of the ``loglik.nc`` beside the file;
        - ``"last"``: the last checkpoint;
        - an integer: that update (must be a saved checkpoint).
    device
        ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).

    Returns
    -------
    Model

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    spikerbm.io.InputError
        Not a netCDF file, not written by spikerbm, not a model, or the checkpoint is absent
        (the message names the file, the problem and the fix).
    """
    path = Path(path)
    ds = io.read_netcdf(path)
    if "spikerbm_version" not in ds.attrs:
        raise ModelFileError(
            f"{path}: not written by spikerbm (no 'spikerbm_version' attribute): load a "
            "model.nc or selected.nc of a spikerbm run, or convert an rbms archive first "
            "with `spikerbm import`")
    with io.about_input(path, rebuild_hint=False):
        check_rbm_dataset(ds)
    return Model(path, primary_replica(ds), checkpoint=checkpoint, device=device)


def _sibling(path: Path, *parts: str) -> Path | None:
    candidate = path.parent.joinpath(*parts)
    return candidate if candidate.is_file() else None


class Model:
    """A trained RBM: parameters of one checkpoint, its neurons and (if stored) its log Z.

    Build it with :func:`load_model`.

    Attributes
    ----------
    path
        The file it came from.
    checkpoint
        Training update of the parameters.
    checkpoint_rule
        How ``checkpoint`` was chosen (e.g. ``"selected (../selected.nc)"``).
    rbm
        The parameters (:class:`spikerbm.rbm.RBM`, float32 on ``device``).
    unit_id, area
        Neuron identities, numpy arrays of shape (n_neurons,).
    n_neurons, n_hidden
        Numbers of visible (neurons) and hidden units.
    device
        The torch device.
    attrs
        The file's attributes (provenance, selection results).
    """

    def __init__(self, path: Path, ds: xr.Dataset, *, checkpoint: str | int,
                 device: str) -> None:
        self.path = Path(path)
        self.attrs = dict(ds.attrs)
        self.device = resolve_device(device)
        self._ds = ds
        self.is_trajectory = "checkpoint" in ds["W"].dims
        self.unit_id = np.asarray(ds["unit_id"].values if "unit_id" in ds.coords
                                  else np.arange(ds.sizes["neuron"]), dtype=np.int64)
        self.area = np.asarray(ds["area"].values if "area" in ds.coords
                               else np.full(ds.sizes["neuron"], "unknown")).astype(str)
        self.checkpoint, self.checkpoint_rule = self._resolve_checkpoint(checkpoint)
        params = ds[["W", "a", "b"]]
        if self.is_trajectory:
            params = params.sel(checkpoint=self.checkpoint)
        self.rbm = rbm_from_numpy(params["W"].values, params["a"].values, params["b"].values,
                                  device=self.device)
        self.n_neurons, self.n_hidden = self.rbm.n_visible, self.rbm.n_hidden
        self._log_z: LogZEstimate | None = None
        self._log_z_source = ""

    def __repr__(self) -> str:
        return (f"<spikerbm Model {self.n_neurons} neurons x {self.n_hidden} hidden, update "
                f"{self.checkpoint} ({self.checkpoint_rule}), {self.device}, from {self.path}>")

    # -- checkpoints ----------------------------------------------------------------------------
    @property
    def checkpoints(self) -> np.ndarray:
        """Update numbers of the checkpoints in the file (one for ``selected.nc``)."""
        if self.is_trajectory:
            return self._ds["checkpoint"].values.astype(np.int64)
        return np.array([self._selected_checkpoint()], dtype=np.int64)

    def _selected_checkpoint(self) -> int:
        return int(self.attrs.get("checkpoint", -1))

    def _resolve_checkpoint(self, checkpoint: str | int) -> tuple[int, str]:
        path = self.path
        if not self.is_trajectory:
            own = self._selected_checkpoint()
            if checkpoint in ("selected", "best") or (
                    not isinstance(checkpoint, str) and int(checkpoint) == own):
                return own, "selected"
            raise ModelFileError(
                f"{path}: a selected.nc holds one model (update {own}); checkpoint "
                f"{checkpoint!r} needs the training trajectory: load "
                f"hidden~{self.attrs.get('n_hidden', '<n>')}/model.nc instead")
        cks = [int(c) for c in self._ds["checkpoint"].values]
        if not isinstance(checkpoint, str):
            if int(checkpoint) not in cks:
                raise ModelFileError(f"{path}: no checkpoint at update {checkpoint}; saved "
                                     f"updates: {cks}")
            return int(checkpoint), "given"
        if checkpoint == "last":
            return cks[-1], "last"
        if checkpoint == "selected":
            sel = _sibling(path.parent, "selected.nc")
            if sel is not None:
                cand = io.read_netcdf(sel)
                if "candidate" in cand.dims:
                    match = cand["checkpoint"].values[
                        cand["n_hidden"].values == int(self._ds.sizes["hidden"])]
                    if match.size and int(match[0]) in cks:
                        return int(match[0]), f"selected ({sel})"
            checkpoint = "best"
        if checkpoint == "best":
            if "best_update" in self.attrs and int(self.attrs["best_update"]) in cks:
                return int(self.attrs["best_update"]), "best online test LL"
            ll_path = _sibling(path, "loglik.nc")
            if ll_path is not None:
                ll = io.read_netcdf(ll_path)
                test = np.where(np.isfinite(ll["ll_test"].values), ll["ll_test"].values,
                                -np.inf)
                if np.isfinite(test).any():
                    best = int(ll["checkpoint"].values[int(np.argmax(test))])
                    if best in cks:
                        return best, f"best test LL ({ll_path})"
            raise ModelFileError(
                f"{path}: no selection or log-likelihood beside this model.nc to choose its "
                "best checkpoint; pass checkpoint='last' or an update number (command "
                "line: --checkpoint last) "
                f"(saved: {cks})")
        raise ValueError(f"checkpoint must be 'selected', 'best', 'last' or an update number; "
                         f"got {checkpoint!r}")

    # -- log Z ------------------------------------------------------------------------------------
    @property
    def log_z(self) -> LogZEstimate:
        """``log Z`` of the model (nats), with its uncertainty and method.

        The stored value when there is one (``selected.nc``; the ``loglik.nc`` beside a
        ``model.nc``), else exact enumeration when the smaller layer has at most
        ``EXACT_LOG_Z_UNITS`` units, else a stored trajectory-AIS value (``log_z_tais``,
        uncertainty ``log_z_tais_std`` or NaN), else AIS computed now (1000 chains, 3000
        inverse temperatures, 4 repeats: the spread is the uncertainty).
        """
        if self._log_z is None:
            self._log_z, self._log_z_source = self._find_log_z()
        return self._log_z

    def stored_log_z(self) -> LogZEstimate | None:
        """The ``log Z`` stored with the model (``selected.nc``, or the ``loglik.nc`` beside a
        ``model.nc``), or None; computes nothing."""
        found = self._stored()
        return None if found is None else found[0]

    def _find_log_z(self) -> tuple[LogZEstimate, str]:
        ds = self._ds
        stored = self._stored()
        if stored is not None:
            return stored
        if min(self.n_neurons, self.n_hidden) <= EXACT_LOG_Z_UNITS:
            value = exact_log_z(self.rbm)
            return LogZEstimate(value, 0.0, "exact", (value,)), "computed"
        if self.is_trajectory and "log_z_tais" in ds:
            value = float(ds["log_z_tais"].sel(checkpoint=self.checkpoint))
            if math.isfinite(value):
                std = (float(ds["log_z_tais_std"].sel(checkpoint=self.checkpoint))
                       if "log_z_tais_std" in ds else math.nan)
                return LogZEstimate(value, std, "tais", (value,)), f"{self.path} (log_z_tais)"
        log.info("no stored log Z for %s: running AIS (1000 chains x 3000 betas x 4)", self)
        gen = torch.Generator(device=self.device).manual_seed(derive_seed(0, "api-ais"))
        return estimate_log_z(self.rbm, method="ais", ais_chains=1000, ais_betas=3000,
                              ais_repeats=4, generator=gen), "computed"

    def _stored(self) -> tuple[LogZEstimate, str] | None:
        if not self.is_trajectory and math.isfinite(float(self.attrs.get("log_z", np.nan))):
            value = float(self.attrs["log_z"])
            return LogZEstimate(value, float(self.attrs.get("log_z_std", np.nan)),
                                str(self.attrs.get("log_z_method", "stored")), (value,)), \
                str(self.path)
        if self.is_trajectory:
            ll_path = _sibling(self.path, "loglik.nc")
            if ll_path is not None:
                ll = io.read_netcdf(ll_path)
                same = (int(ll.attrs.get("n_hidden", -1)) == self.n_hidden
                        and int(ll.attrs.get("n_neurons", -1)) == self.n_neurons)
                if same and self.checkpoint in ll["checkpoint"].values and "log_z" in ll:
                    sel = ll.sel(checkpoint=self.checkpoint)
                    value = float(sel["log_z"])
                    if math.isfinite(value):
                        std = float(sel["log_z_std"]) if "log_z_std" in ll else math.nan
                        return LogZEstimate(value, std, str(ll.attrs.get("log_z_method", "?")),
                                            (value,)), str(ll_path)
        return None

    # -- data -----------------------------------------------------------------------------------
    def _states(self, raster: Any, *, split: str = "all", what: str = "raster") -> np.ndarray:
        """0/1 states (n, n_neurons) uint8 from an array, DataArray, raster Dataset or path,
        aligned to the model's neurons by ``unit_id`` when the input has one."""
        if isinstance(raster, str | os.PathLike):
            raster = io.read_netcdf(raster)
        if isinstance(raster, xr.Dataset):
            if "raster" not in raster:
                raise ValueError(f"{what}: a Dataset needs a 'raster' variable (raster.nc)")
            if split != "all":
                if "split" not in raster.coords:
                    raise ValueError(f"{what}: split={split!r} needs a 'split' coordinate")
                raster = raster["raster"].isel(time_bin=raster["split"].values == split)
            else:
                raster = raster["raster"]
        elif split != "all":
            raise ValueError(f"{what}: split={split!r} applies to a raster Dataset only")
        if isinstance(raster, xr.DataArray):
            if "neuron" not in raster.dims or raster.ndim != 2:
                raise ValueError(f"{what}: a DataArray needs dims (time_bin or sample, "
                                 f"'neuron'); got {raster.dims}")
            other = [d for d in raster.dims if d != "neuron"][0]
            if "unit_id" in raster.coords:
                ids = raster["unit_id"].values.astype(np.int64)
                pos = {u: k for k, u in enumerate(ids)}
                missing = [int(u) for u in self.unit_id if u not in pos]
                extra = sorted(set(ids.tolist()) - set(self.unit_id.tolist()))
                if missing or extra:
                    raise ValueError(
                        f"{what}: its neurons differ from the model's: {len(missing)} model "
                        f"unit(s) missing (e.g. {missing[:5]}), {len(extra)} unknown "
                        f"(e.g. {extra[:5]}); select the model's units with "
                        ".sel(neuron=...) or score with the model of these units")
                raster = raster.isel(neuron=[pos[u] for u in self.unit_id])
            raster = raster.transpose(other, "neuron").values
        v = raster.detach().cpu().numpy() if isinstance(raster, torch.Tensor) else np.asarray(
            raster)
        if v.ndim == 1:
            v = v[None, :]
        if v.ndim != 2 or v.shape[1] != self.n_neurons:
            raise ValueError(f"{what}: expected shape (n, {self.n_neurons}) (the model's "
                             f"neurons); got {v.shape}")
        if v.shape[0] == 0:
            raise ValueError(f"{what}: no rows")
        if not np.isin(v, (0, 1)).all():
            raise ValueError(f"{what}: values must be 0/1 (binarized spikes)")
        return v.astype(np.uint8)

    def free_energy(self, raster: Any, *, split: str = "all") -> np.ndarray:
        """Visible free energy (marginal energy) of each state (docs/methods.md §2).

        ``E(v) = -a.v - sum_mu softplus(b_mu + (v W)_mu)``, so ``p(v) = exp(-E(v)) / Z``.

        Parameters
        ----------
        raster
            States, shape (n, n_neurons), 0/1: a numpy/torch array, an xarray DataArray with
            dim ``neuron`` (aligned by ``unit_id``), a raster Dataset or a ``raster.nc`` path.
        split
            For a raster Dataset/path: ``"all"``, ``"train"`` or ``"test"``.

        Returns
        -------
        numpy.ndarray
            float64, shape (n,), nats (units of k_B T).

        Raises
        ------
        ValueError
            Wrong shape, non-binary values or neurons that differ from the model's.
        """
        v = torch.as_tensor(self._states(raster, split=split))
        out = [free_energy(self.rbm, v[s:s + 8192].to(self.device)).cpu().numpy()
               for s in range(0, v.shape[0], 8192)]
        return np.concatenate(out)

    def log_likelihood(self, raster: Any, *, split: str = "all",
                       log_z: str | float = "stored") -> Score:
        """Average log-likelihood of a raster, ``-<E(v)> - log Z`` (docs/methods.md §4).

        Parameters
        ----------
        raster, split
            As in :meth:`free_energy`.
        log_z
            ``"stored"`` (default: :attr:`log_z`, the value stored with the model or the best
            available), ``"exact"`` (enumeration of the smaller layer; up to ~25 units),
            ``"ais"`` (computed now) or a number (nats; uncertainty NaN).

        Returns
        -------
        Score
            ``ll`` (nats per sample), ``ll_std`` (= the log Z uncertainty), per-neuron value,
            the log Z used and the data size.
        """
        e = self.free_energy(raster, split=split)
        if log_z == "stored":
            est = self.log_z
        elif log_z == "exact":
            value = exact_log_z(self.rbm)
            est = LogZEstimate(value, 0.0, "exact", (value,))
        elif log_z == "ais":
            gen = torch.Generator(device=self.device).manual_seed(derive_seed(0, "api-ais"))
            est = estimate_log_z(self.rbm, method="ais", ais_chains=1000, ais_betas=3000,
                                 ais_repeats=4, generator=gen)
        elif isinstance(log_z, int | float) and not isinstance(log_z, bool):
            est = LogZEstimate(float(log_z), math.nan, "given", (float(log_z),))
        else:
            raise ValueError(f"log_z must be 'stored', 'exact', 'ais' or a number; got {log_z!r}")
        ll = float(-e.mean() - est.log_z)
        return Score(ll=ll, ll_std=float(est.log_z_std), ll_per_neuron=ll / self.n_neurons,
                     log_z=float(est.log_z), log_z_std=float(est.log_z_std),
                     log_z_method=est.method, n_samples=int(e.size), n_neurons=self.n_neurons)

    def conditional_activity(self, raster: Any, *, split: str = "all") -> np.ndarray:
        """``P(v_i = 1 | v_-i)`` of every neuron given the rest of each state.

        ``sigmoid(h_eff_i(v))`` with the exact effective field of docs/methods.md §5(g):
        ``h_eff_i = a_i + sum_mu [softplus(b_mu + W_imu + x_mu) - softplus(b_mu + x_mu)]``,
        ``x_mu = sum_{j != i} W_jmu v_j``.

        Parameters
        ----------
        raster, split
            As in :meth:`free_energy`.

        Returns
        -------
        numpy.ndarray
            float64, shape (n, n_neurons), probabilities per bin.
        """
        from spikerbm.statistics import effective_fields

        v = self._states(raster, split=split)
        return 1.0 / (1.0 + np.exp(-effective_fields(self.rbm, v)))

    # -- sampling --------------------------------------------------------------------------------
    def _indices(self, neurons: Iterable[Any], what: str) -> np.ndarray:
        """Indices of neurons given by unit id (int) or area name (str: all its neurons)."""
        pos = {int(u): k for k, u in enumerate(self.unit_id)}
        out: list[int] = []
        for item in neurons:
            if isinstance(item, str):
                hit = np.flatnonzero(self.area == item)
                if not hit.size:
                    raise ValueError(f"{what}: no neuron in area {item!r} (areas: "
                                     f"{sorted(set(self.area.tolist()))})")
                out.extend(hit.tolist())
            else:
                if int(item) not in pos:
                    raise ValueError(f"{what}: unit id {item} is not a neuron of this model "
                                     f"(unit ids {self.unit_id[:5].tolist()}...)")
                out.append(pos[int(item)])
        idx = np.asarray(out, dtype=np.int64)
        if np.unique(idx).size != idx.size:
            raise ValueError(f"{what}: a neuron is listed twice")
        return idx

    def _conditioned(self, rbm: RBM, idx: np.ndarray, values: np.ndarray) -> RBM:
        """The RBM of the free neurons given the clamped ones (exact: ``b' = b + c W_c``)."""
        free = np.setdiff1d(np.arange(self.n_neurons), idx)
        c = torch.as_tensor(values, dtype=rbm.dtype, device=rbm.device)
        ii, ff = (torch.as_tensor(x, device=rbm.device) for x in (idx, free))
        return RBM(rbm.W[ff].contiguous(), rbm.a[ff].contiguous(), rbm.b + c @ rbm.W[ii])

    def trajectory(self, *, max_models: int | None = None) -> tuple[list[RBM], list[int]]:
        """The PTT ladder: checkpoints of the training trajectory up to this model's update.

        From this file (``model.nc``) or, for ``selected.nc``, from
        ``hidden~{n_hidden}/model.nc`` beside it.

        Returns
        -------
        models, updates
            RBMs (float32 on the device) and their update numbers, ascending.

        Raises
        ------
        spikerbm.io.InputError
            No trajectory file, or it does not contain this model's checkpoint.
        """
        from spikerbm.ptt import ladder_indices

        if self.is_trajectory:
            ds, src = self._ds, self.path
        else:
            src = _sibling(self.path, f"hidden~{self.n_hidden}", "model.nc")
            if src is None:
                raise ModelFileError(
                    f"{self.path}: PTT needs the training trajectory; "
                    f"hidden~{self.n_hidden}/model.nc is not beside it: load that model.nc "
                    "(checkpoint='selected') or use sampler='gibbs'")
            ds = io.read_netcdf(src)
            with io.about_input(src, rebuild_hint=False):
                check_rbm_dataset(ds, n_visible=self.n_neurons)
            if self.checkpoint not in ds["checkpoint"].values:
                raise ModelFileError(f"{src}: no checkpoint {self.checkpoint} (the selected "
                                     "model's update): the files come from different runs")
        cks = ds["checkpoint"].values.astype(np.int64)
        if self.checkpoint == int(cks[0]):
            raise ModelFileError(f"{src}: this model is the first checkpoint (update "
                                 f"{self.checkpoint}): a PTT ladder needs earlier checkpoints; "
                                 "use sampler='gibbs'")
        idx = ladder_indices(cks, self.checkpoint, max_models=max_models)
        models = [rbm_from_numpy(ds["W"].values[k], ds["a"].values[k], ds["b"].values[k],
                                 device=self.device) for k in idx]
        if not self.is_trajectory:
            same = np.array_equal(models[-1].W.cpu().numpy(), self.rbm.W.cpu().numpy())
            if not same:
                raise ModelFileError(f"{src}: its checkpoint {self.checkpoint} differs from "
                                     f"{self.path}: the files come from different runs")
        return models, [int(cks[k]) for k in idx]

    def sample(self, n: int, *, sweeps: int = 1000, init: Any = None,
               clamp: Mapping[Any, int] | None = None, seed: int = 0,
               sampler: str = "gibbs", ptt_models: int | None = None, swap_every: int = 1,
               progress: bool = False) -> xr.Dataset:
        """Draw samples: the final states of ``n`` independent chains after ``sweeps`` sweeps.

        Parameters
        ----------
        n
            Number of samples (= independent chains).
        sweeps
            Block-Gibbs sweeps per chain (``sampler="ptt"``: PTT steps, each sweeping every
            model of the ladder ``swap_every`` times and proposing swaps: cost ~ ladder size x
            ``swap_every`` x ``sweeps`` sweeps). Whether this is enough to equilibrate depends
            on the model: check with two inits, or read the statistics stage's
            ``tau_*_sweeps``.
        init
            Start states: ``None`` (Bernoulli(1/2) per neuron), or states as in
            :meth:`free_energy` (rows are cycled to ``n``), e.g. data bins.
        clamp
            Neurons held fixed: ``{unit_id: 0 or 1}``. The free neurons are sampled from the
            exact conditional ``p(v_free | v_clamped)``: an RBM over the free neurons with
            hidden bias ``b + sum_clamped v_i W_i`` (the clamped neurons are never updated).
        seed
            Seed of the initial states and every random draw.
        sampler
            ``"gibbs"`` (block Gibbs) or ``"ptt"`` (parallel trajectory tempering over the
            checkpoints of the training trajectory up to this model, :mod:`spikerbm.ptt`).
        ptt_models
            Most models in the PTT ladder (default: every checkpoint up to this one).
        swap_every
            PTT: sweeps between swap passes.
        progress
            Show a progress bar (tqdm, stderr).

        Returns
        -------
        xarray.Dataset
            ``samples(sample, neuron)`` uint8 with coords ``unit_id``, ``area``; attrs
            ``sampler``, ``sweeps``, ``seed``, ``checkpoint``, ``n_hidden``, ``clamped``
            (JSON ``{unit_id: value}``); PTT adds ``ptt_acceptance(ptt_pair)`` (swap
            acceptance of each neighbour pair) with coords ``ptt_update_lo``,
            ``ptt_update_hi`` and the attr ``ptt_min_acceptance``.

        Raises
        ------
        ValueError
            Bad arguments (the message names the value and the fix).
        """
        from tqdm.auto import tqdm

        if int(n) != n or n < 1:
            raise ValueError(f"n (samples) must be an integer >= 1; got {n!r}")
        if int(sweeps) != sweeps or sweeps < 0:
            raise ValueError(f"sweeps must be an integer >= 0; got {sweeps!r}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}; got {sampler!r}")
        n, sweeps = int(n), int(sweeps)
        gen = torch.Generator(device=self.device).manual_seed(derive_seed(seed, "sample"))
        clamp = dict(clamp or {})
        idx = self._indices(clamp.keys(), "clamp")
        values = np.asarray([clamp[k] for k in clamp], dtype=np.float32)
        if not np.isin(values, (0, 1)).all():
            raise ValueError(f"clamp values must be 0 or 1; got {sorted(set(values.tolist()))}")
        if idx.size == self.n_neurons:
            raise ValueError("clamp fixes every neuron: nothing left to sample")
        free = np.setdiff1d(np.arange(self.n_neurons), idx)
        if init is None:
            v0 = (torch.rand(n, free.size, generator=gen, device=self.device) < 0.5).float()
        else:
            start = self._states(init, what="init")
            start = start[np.arange(n) % start.shape[0]][:, free]
            v0 = torch.as_tensor(start, dtype=torch.float32, device=self.device)

        if sampler == "gibbs":
            target = self._conditioned(self.rbm, idx, values) if idx.size else self.rbm
            chains = Sampler(self.device).chains(v0, n_hidden=self.n_hidden, generator=gen)
            run_model = target
        else:
            from spikerbm.ptt import TrajectoryTempering

            ladder, updates = self.trajectory(max_models=ptt_models)
            if idx.size:
                ladder = [self._conditioned(m, idx, values) for m in ladder]
            chains = TrajectoryTempering(ladder, v0=v0, generator=gen, swap_every=swap_every,
                                         labels=updates)
            run_model = None
        block = max(1, sweeps // 200)
        with torch.no_grad(), tqdm(total=sweeps, disable=not progress, unit="sweep",
                                   desc=f"sampling ({sampler})", leave=False) as bar:
            done = 0
            while done < sweeps:
                k = min(block, sweeps - done)
                chains.sweep(run_model, k=k) if run_model is not None else chains.sweep(k=k)
                done += k
                bar.update(k)
        out = np.empty((n, self.n_neurons), dtype=np.uint8)
        out[:, free] = chains.v.to(torch.uint8).cpu().numpy()
        out[:, idx] = values.astype(np.uint8)
        ds = xr.Dataset(
            {"samples": (("sample", "neuron"), out,
                         {"long_name": "model samples: 1 if the neuron fires in the bin"})},
            coords={"unit_id": ("neuron", self.unit_id), "area": ("neuron", self.area)},
            attrs={"sampler": sampler, "sweeps": sweeps, "seed": int(seed),
                   "checkpoint": self.checkpoint, "n_hidden": self.n_hidden,
                   "model_file": str(self.path),
                   "clamped": json.dumps({str(k): int(v) for k, v in clamp.items()})},
        )
        if sampler == "ptt":
            acc = chains.acceptance
            ds["ptt_acceptance"] = ("ptt_pair", acc, {"units": "fraction of swap proposals"})
            ds = ds.assign_coords(ptt_update_lo=("ptt_pair", np.asarray(updates[:-1])),
                                  ptt_update_hi=("ptt_pair", np.asarray(updates[1:])))
            ds.attrs.update(ptt_min_acceptance=float(np.nanmin(acc)) if acc.size else np.nan,
                            ptt_n_models=len(updates), ptt_swap_every=int(swap_every))
        return ds

    # -- couplings -------------------------------------------------------------------------------
    def couplings(self, neurons: Sequence[Any] | None = None, *, order: int = 2,
                  log_tol: float = 34.0, n_nodes: int = 40) -> xr.Dataset:
        """Effective Ising couplings of (a subset of) the neurons (docs/methods.md §6).

        The Gaussian approximation of Decelle et al. (SciPost Phys. 16, 095, 2024) of the full
        model, restricted to the chosen neurons (the couplings between them; every other
        neuron still enters through the Gaussian width): fields ``H_i`` by Gauss-Hermite
        quadrature (:func:`spikerbm.couplings.fields`), pairs ``J_ij`` and 3-body terms
        ``J_ijk`` by the spectral (CP) form (:func:`spikerbm.couplings.spectral_factors`).

        Parameters
        ----------
        neurons
            Unit ids (int) and/or area names (str: all neurons of the area); ``None``: all.
        order
            2: fields and pairs; 3: also every 3-body term ``i < j < k`` of the subset
            (at most ``MAX_TRIPLETS``).
        log_tol, n_nodes
            Accuracy of the spectral form (``-log`` relative error) and quadrature nodes.

        Returns
        -------
        xarray.Dataset
            ``H(neuron)``, ``J(neuron, neuron2)`` (symmetric, zero diagonal), with coords
            ``unit_id``, ``area`` (and ``unit_id2``, ``area2``); order 3 adds ``triplet_J3``
            (triplet) with ``triplet_i``, ``triplet_j``, ``triplet_k`` (indices into
            ``neuron``). Dimensionless (energies in k_B T, ``s = 2v - 1``).
        """
        from spikerbm import couplings as cp

        if order not in (2, 3):
            raise ValueError(f"order must be 2 or 3; got {order!r}")
        idx = (np.arange(self.n_neurons) if neurons is None
               else self._indices(neurons, "neurons"))
        if idx.size < order:
            raise ValueError(f"order-{order} couplings need at least {order} neurons; got "
                             f"{idx.size}")
        with torch.no_grad():
            rbm = self.rbm.to(dtype=torch.float64)
            H = cp.fields(rbm, n_nodes=n_nodes).cpu().numpy()[idx]
            f2 = cp.spectral_factors(rbm, order=2, log_tol=log_tol)
            A = f2.A[torch.as_tensor(idx, device=f2.A.device)]
            J = ((A * f2.beta) @ A.T).cpu().numpy()
        J = 0.5 * (J + J.T)
        np.fill_diagonal(J, 0.0)
        uid, area = self.unit_id[idx], self.area[idx]
        ds = xr.Dataset(
            {"H": ("neuron", H, {"units": "1", "long_name": "effective field H_i"}),
             "J": (("neuron", "neuron2"), J, {"units": "1", "long_name": "pairwise J_ij"})},
            coords={"unit_id": ("neuron", uid), "area": ("neuron", area),
                    "unit_id2": ("neuron2", uid), "area2": ("neuron2", area)},
            attrs={"checkpoint": self.checkpoint, "n_hidden": self.n_hidden,
                   "model_file": str(self.path), "order": order, "log_tol": log_tol,
                   "quadrature_nodes": n_nodes},
        )
        if order == 3:
            k = idx.size
            n_trip = k * (k - 1) * (k - 2) // 6
            if n_trip > MAX_TRIPLETS:
                raise ValueError(f"{n_trip:,} triplets among {k} neurons exceed "
                                 f"{MAX_TRIPLETS:,}: choose fewer neurons (or use the "
                                 "workflow's couplings stage, which streams all triplets)")
            trip = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(k), 3)),
                               dtype=np.int64, count=3 * n_trip).reshape(n_trip, 3)
            ii, jj, kk = trip.T
            with torch.no_grad():
                f3 = cp.spectral_factors(rbm, order=3, log_tol=log_tol)
                j3 = cp.triplet_couplings(f3, np.stack([idx[ii], idx[jj], idx[kk]], 1)
                                          ).cpu().numpy()
            ds["triplet_J3"] = ("triplet", j3, {"units": "1", "long_name": "3-body J_ijk"})
            ds = ds.assign_coords(triplet_i=("triplet", ii), triplet_j=("triplet", jj),
                                  triplet_k=("triplet", kk))
        return ds

    # -- export ----------------------------------------------------------------------------------
    def to_xarray(self) -> xr.Dataset:
        """The parameters as a Dataset: ``W(neuron, hidden)``, ``a(neuron)``, ``b(hidden)``
        (float32) with ``unit_id``, ``area``; attrs ``checkpoint``, ``n_hidden``, the source
        file's attributes (provenance) and, once :attr:`log_z` has been obtained, ``log_z``,
        ``log_z_std``, ``log_z_method``."""
        ds = xr.Dataset(
            {"W": (("neuron", "hidden"), self.rbm.W.cpu().numpy()),
             "a": ("neuron", self.rbm.a.cpu().numpy()),
             "b": ("hidden", self.rbm.b.cpu().numpy())},
            coords={"unit_id": ("neuron", self.unit_id), "area": ("neuron", self.area)},
            attrs={**{k: v for k, v in self.attrs.items()
                      if isinstance(v, str | int | float | np.number)},
                   "checkpoint": self.checkpoint, "n_hidden": self.n_hidden,
                   "model_file": str(self.path)},
        )
        if self._log_z is not None:
            ds.attrs.update(log_z=self._log_z.log_z, log_z_std=self._log_z.log_z_std,
                            log_z_method=self._log_z.method)
        return ds

