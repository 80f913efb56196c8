"""Generated-vs-real statistics of a trained RBM (docs/methods.md §5, paper Fig. 3).

Four parts:

1. **Equilibrium sampling** (:func:`sample_equilibrium`): block Gibbs on many independent chains,
   half started from data bins and half from random states, with an explicit equilibration
   check written into the output (integrated autocorrelation time of the energy and of the
   population activity, and a z-test between the two chain sets).
2. **Estimators** on binary samples ``v`` of shape (n_samples, n_neurons): firing rates,
   connected pairwise covariances, connected 3-point correlations on random triplets, PCA
   projections on the training data's principal axes, the population-activity histogram, the
   marginal-energy histogram and the calibration of ``P(v_i = 1 | h_eff)``.
3. **Comparisons** (:func:`compare_statistic`, :func:`normalised_score`): Pearson r and
   least-squares slope of train-vs-test (the noise ceiling) and train-vs-generated, and a score
   (0 = no better than the independent-site model, 1 = as close to train as the test set).
4. **Effective number of generated samples** (:func:`effective_samples`): the integrated
   autocorrelation time of each statistic along the chains, ``n_eff``, and from it the Monte
   Carlo error of every generated value and of every score.

Score definition
----------------
With ``d(X, Y)`` the mean squared difference of a statistic between sets X and Y (over neurons,
pairs or triplets)::

    score = (d(train, independent) - d(train, generated)) / (d(train, independent) - d(train, test))

The independent-site model is Bernoulli with the training rates, sampled with as many samples
as the generated set. The score is NaN (undefined) when the gap
``d(train, independent) - d(train, test)`` is at most ``MIN_SCORE_GAP`` times
``d(train, independent)``: the floor is then indistinguishable from the ceiling within
finite-sample noise. For firing rates this is structural (the independent model reproduces the
train rates exactly in expectation, so both distances are pure sampling noise), so the rate
score is always NaN; rates are judged by r, slope and ``error_ratio = d(train, generated) /
d(train, test)`` (reported for every statistic; 1 = as good as the test set).

Precision
---------
Sampling runs in float32; every energy and every effective field (an energy difference) is
computed in float64. Pair counts ``sum_t v_ti v_tj`` are computed as float32 matrix products of
0/1 values, which are exact integers while ``n_samples < 2**24``; triple counts use bit sets and
popcounts (exact). All moments are then formed in float64.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from spikerbm import rbm as rbm_mod
from spikerbm.diagnostics import equilibration_check, integrated_autocorr_time
from spikerbm.provenance import derive_seed
from spikerbm.rbm import RBM
from spikerbm.sampling import Sampler

#: The sample sets compared, in the order of the ``set`` dimension.
SETS = ("train", "test", "generated", "independent")
#: Statistics compared by r, slope and score.
STATS = ("rate", "covariance", "corr3")
#: Comparisons against the training set.
COMPARISONS = ("train_test", "train_generated", "train_independent")
#: Sets for which the P(v_i = 1 | h_eff) calibration is computed.
HEFF_SETS = ("test", "generated")
#: Minimal floor-to-ceiling gap, relative to d(train, independent), for a defined score.
MIN_SCORE_GAP = 0.1
#: Most time points kept of the per-chain energy / activity traces (longer runs are strided).
MAX_TRACE_RECORDS = 4000
#: Chains per start set whose energy / activity traces are recorded (bounds the cost).
MAX_TRACE_CHAINS = 128
#: Most sample x element products behind the linear observable of a score's Monte Carlo error
#: (samples of the first chains are used beyond that; docs/methods.md §5).
MAX_TERM_PRODUCTS = 2**26
#: Most products, and samples, behind the Gram matrix of element terms (second-order part).
MAX_GRAM_PRODUCTS = 2**32
MAX_GRAM_SAMPLES = 1024
#: Generated samples stored as they are (``generated_excerpt``: the raster figure).
N_EXCERPT = 500


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------
def _as_binary(v: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """Return ``v`` as a 2-D uint8 numpy array of 0/1, or raise a ValueError naming ``name``."""
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    v = np.asarray(v)
    if v.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_neurons); got shape {v.shape}")
    if v.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples to estimate moments; got {v.shape[0]}")
    if v.dtype == bool:
        ok = True
    elif v.dtype.kind == "u":
        ok = v.size == 0 or int(v.max()) <= 1
    else:
        ok = bool(((v == 0) | (v == 1)).all())
    if not ok:
        bad = v[(v != 0) & (v != 1)].ravel()[:3]
        raise ValueError(f"{name} must be binary (0/1); found values such as {bad.tolist()}")
    return v.astype(np.uint8, copy=False)


def _check_positive_int(value: int, name: str, *, minimum: int = 1) -> int:
    if int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------
# equilibrium sampling (block Gibbs: spikerbm.sampling) and its check
# --------------------------------------------------------------------------------------------
def sample_equilibrium(rbm: RBM, *, init_data: np.ndarray, n_samples: int, n_chains: int,
                       burn_in_sweeps: int, thin_sweeps: int, seed: int,
                       init_random: np.ndarray | None = None, tau_factor: float = 20.0,
                       z_max: float = 4.0, ladder: Sequence[RBM] | None = None,
                       ladder_updates: Sequence[int] | None = None) -> xr.Dataset:
    """Equilibrium samples of an RBM from independent Gibbs chains, with an equilibration check.

    Half of the chains start from data bins drawn at random from ``init_data``, the other half
    from random states (Bernoulli(1/2), or the rows of ``init_random``). After
    ``burn_in_sweeps`` sweeps every chain is sampled every ``thin_sweeps`` sweeps until
    ``n_samples`` states are collected.

    The check passes when both hold:

    - the integrated autocorrelation times ``tau`` of the marginal energy ``E(v)`` and of the
      population activity ``K = sum_i v_i`` (recorded on up to ``MAX_TRACE_CHAINS`` chains of
      each start set, estimated from half-way through the burn-in to the end) are reliably
      estimated and ``burn_in_sweeps >= tau_factor * tau``;
    - chains started from data and from random states agree: the per-chain means of ``E`` and
      ``K`` over the collected samples differ between the two sets by at most ``z_max``
      standard errors (chains are independent, so the standard error is exact).

    Parameters
    ----------
    rbm
        The model; sampling runs in float32 on ``rbm.device``.
    init_data
        Data states, shape (n_bins, n_visible), 0/1.
    n_samples
        Number of samples to return.
    n_chains
        Number of independent chains (at least 4: two per start set).
    burn_in_sweeps
        Sweeps before the first sample.
    thin_sweeps
        Sweeps between samples of one chain.
    seed
        Seed of the chain initialisation and of the Gibbs noise.
    init_random
        Optional starting states for the "random" half, shape (k, n_visible); rows are cycled.
    tau_factor
        Required ratio of burn-in to autocorrelation time.
    z_max
        Largest accepted ``|z|`` between the two chain sets.
    ladder
        Sample with parallel trajectory tempering (:mod:`spikerbm.ptt`) over these models
        (training checkpoints in order, the last one ``rbm`` itself) instead of plain Gibbs;
        every model's chains start from the same states, and one "sweep" is then one PTT step
        (a sweep of every model and a swap pass).
    ladder_updates
        Update numbers of the ladder's models (stored with the acceptance rates).

    Returns
    -------
    xarray.Dataset
        ``samples(sample, neuron)`` uint8; ``trace_energy(start, record)`` and
        ``trace_k(start, record)`` (means over the traced chains of each start set) with
        ``record_sweep(record)``;
        attrs ``equilibrated`` (1/0), ``equilibration_reason``, ``tau_energy_sweeps``,
        ``tau_k_sweeps``, ``tau_converged``, ``z_energy``, ``z_k``, ``z_max``, ``tau_factor``,
        ``burn_in_sweeps``, ``thin_sweeps``, ``n_chains``, ``n_chains_data``,
        ``n_chains_random``, ``sampler`` (``gibbs`` or ``ptt``); with a ladder also
        ``ptt_acceptance(ptt_pair)`` (swap acceptance of each neighbour pair over the whole
        run) with coords ``ptt_update_lo``, ``ptt_update_hi`` and attrs ``ptt_n_models``,
        ``ptt_min_acceptance``.
    """
    n_samples = _check_positive_int(n_samples, "n_samples")
    n_chains = _check_positive_int(n_chains, "n_chains", minimum=4)
    burn_in_sweeps = _check_positive_int(burn_in_sweeps, "burn_in_sweeps")
    thin_sweeps = _check_positive_int(thin_sweeps, "thin_sweeps")
    if tau_factor <= 0 or z_max <= 0:
        raise ValueError(f"tau_factor and z_max must be > 0; got {tau_factor}, {z_max}")
    data = _as_binary(init_data, "init_data")
    n_vis = rbm.n_visible
    if data.shape[1] != n_vis:
        raise ValueError(f"init_data has {data.shape[1]} neurons but the RBM has {n_vis} "
                         "visible units; pass the raster the model was trained on")
    device, dtype = rbm.device, torch.float32
    model = rbm.to(dtype=dtype)
    rng = np.random.default_rng(derive_seed(seed, "init"))
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, "gibbs"))

    n_data = n_chains // 2
    n_rand = n_chains - n_data
    rows = rng.choice(data.shape[0], size=n_data, replace=data.shape[0] < n_data)
    v_data = torch.as_tensor(data[rows], dtype=dtype).to(device)
    if init_random is None:
        v_rand = torch.bernoulli(torch.full((n_rand, n_vis), 0.5, dtype=dtype, device=device),
                                 generator=gen)
    else:
        r = np.atleast_2d(np.asarray(init_random))
        if r.ndim != 2 or r.shape[1] != n_vis or not np.isin(r, (0, 1)).all():
            raise ValueError(f"init_random must be 0/1 of shape (k, {n_vis}); got {r.shape}")
        v_rand = torch.as_tensor(r[np.arange(n_rand) % r.shape[0]], dtype=dtype).to(device)
    if ladder is None:
        chains = Sampler(device).chains(torch.cat([v_data, v_rand]), n_hidden=model.n_hidden,
                                        generator=gen)
    else:
        from spikerbm.ptt import TrajectoryTempering

        if tuple(ladder[-1].W.shape) != tuple(rbm.W.shape):
            raise ValueError("the PTT ladder must end with the sampled model")
        chains = TrajectoryTempering([*ladder[:-1], model], v0=torch.cat([v_data, v_rand]),
                                     generator=gen, labels=ladder_updates)

    per_chain = math.ceil(n_samples / n_chains)
    total = burn_in_sweeps + per_chain * thin_sweeps
    every = max(1, math.ceil(total / MAX_TRACE_RECORDS))
    n_rec = total // every
    rbm64 = rbm.to(dtype=torch.float64)  # energies from the full-precision parameters
    n_td, n_tr = min(n_data, MAX_TRACE_CHAINS), min(n_rand, MAX_TRACE_CHAINS)
    traced = torch.cat([torch.arange(n_td), n_data + torch.arange(n_tr)]).to(device)
    tr_e = torch.empty(n_rec, n_td + n_tr, dtype=torch.float64, device=device)
    tr_k = torch.empty(n_rec, n_td + n_tr, dtype=torch.float64, device=device)
    samples = torch.empty(per_chain, n_chains, n_vis, dtype=torch.uint8, device=device)
    rec = 0
    with torch.no_grad():
        for sweep in range(1, total + 1):
            chains.sweep(model)
            v = chains.v
            if sweep % every == 0 and rec < n_rec:
                vt = v[traced]
                tr_e[rec] = rbm_mod.free_energy(rbm64, vt)
                tr_k[rec] = vt.sum(1, dtype=torch.float64)
                rec += 1
            after = sweep - burn_in_sweeps
            if after > 0 and after % thin_sweeps == 0:
                samples[after // thin_sweeps - 1] = v.to(torch.uint8)
        s_energy = rbm_mod.free_energy(rbm64, samples.reshape(-1, n_vis)).reshape(per_chain, -1)
    tr_e_np, tr_k_np = tr_e.cpu().numpy(), tr_k.cpu().numpy()
    rec_sweep = (np.arange(n_rec) + 1) * every
    check = equilibration_check(
        tr_e_np, tr_k_np, s_energy.mean(0).cpu().numpy(),
        samples.sum(2, dtype=torch.float64).mean(0).cpu().numpy(), n_data=n_data, every=every,
        burn_in_sweeps=burn_in_sweeps, tau_factor=tau_factor, z_max=z_max)
    reasons = check.pop("reasons")
    ok = not reasons

    flat = samples.reshape(-1, n_vis)[:n_samples].cpu().numpy()
    out = xr.Dataset(
        {
            "samples": (("sample", "neuron"), flat),
            "trace_energy": (("start", "record"), np.stack(
                [tr_e_np[:, :n_td].mean(1), tr_e_np[:, n_td:].mean(1)]), {"units": "1"}),
            "trace_k": (("start", "record"), np.stack(
                [tr_k_np[:, :n_td].mean(1), tr_k_np[:, n_td:].mean(1)]),
                {"units": "active neurons"}),
        },
        coords={"start": ["data", "random"], "record_sweep": ("record", rec_sweep)},
        attrs={
            "equilibrated": int(ok),
            "equilibration_reason": "passed" if ok else "; ".join(reasons),
            **check,
            "z_max": float(z_max),
            "tau_factor": float(tau_factor),
            "burn_in_sweeps": burn_in_sweeps,
            "thin_sweeps": thin_sweeps,
            "n_chains": n_chains,
            "n_chains_data": n_data,
            "n_chains_random": n_rand,
            "sampler": "gibbs" if ladder is None else "ptt",
        },
    )
    if ladder is not None:
        acc = chains.acceptance
        updates = (np.asarray(ladder_updates, dtype=np.int64) if ladder_updates is not None
                   else np.arange(len(ladder), dtype=np.int64))
        out["ptt_acceptance"] = ("ptt_pair", acc, {"units": "fraction of swap proposals"})
        out = out.assign_coords(ptt_update_lo=("ptt_pair", updates[:-1]),
                                ptt_update_hi=("ptt_pair", updates[1:]))
        out.attrs.update(ptt_n_models=len(ladder), ptt_min_acceptance=float(np.min(acc)))
    return out


# --------------------------------------------------------------------------------------------
# estimators
# --------------------------------------------------------------------------------------------
def firing_rates(v: np.ndarray) -> np.ndarray:
    """Rates ``m_i = <v_i>``, float64, shape (n_neurons,)."""
    return _as_binary(v, "v").mean(axis=0, dtype=np.float64)


def second_moments(v: np.ndarray, *, device: torch.device | str = "cpu") -> np.ndarray:
    """``<v_i v_j>`` (all i, j), float64, shape (n_neurons, n_neurons).

    Counts come from a float32 matrix product of 0/1 values, exact for fewer than 2**24 samples.
    """
    v = _as_binary(v, "v")
    if v.shape[0] >= 2**24:
        raise ValueError(f"{v.shape[0]} samples exceed float32's exact-integer range; "
                         "pass fewer than 2**24 samples")
    x = torch.as_tensor(v).to(device=device, dtype=torch.float32)
    with rbm_mod.tf32_matmul(False):
        counts = (x.T @ x).cpu().numpy().astype(np.float64)
    return counts / v.shape[0]


def covariances(v: np.ndarray, *, device: torch.device | str = "cpu") -> np.ndarray:
    """Connected covariances ``C_ij = <v_i v_j> - m_i m_j``, float64, (n_neurons, n_neurons)."""
    m = firing_rates(v)
    return second_moments(v, device=device) - np.outer(m, m)


def upper_pairs(n_neurons: int) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays ``(i, j)`` of all pairs ``i < j`` (row-major order)."""
    i, j = np.triu_indices(n_neurons, k=1)
    return i.astype(np.int32), j.astype(np.int32)


def sample_triplets(n_neurons: int, n_triplets: int, *, seed: int) -> np.ndarray:
    """A seeded random subset of distinct triplets ``i < j < k``, sorted, shape (n, 3), int64.

    All ``C(n_neurons, 3)`` triplets are returned when there are no more than ``n_triplets``.
    """
    _check_positive_int(n_triplets, "n_triplets")
    if n_neurons < 3:
        raise ValueError(f"3-point correlations need at least 3 neurons; got {n_neurons}")
    total = math.comb(n_neurons, 3)
    if total <= n_triplets:
        return np.array(list(itertools.combinations(range(n_neurons), 3)), dtype=np.int64)
    rng = np.random.default_rng(derive_seed(seed, "triplets"))
    n3 = np.int64(n_neurons)
    found = np.empty(0, dtype=np.int64)
    while found.size < n_triplets:
        draw = np.sort(rng.integers(0, n_neurons, size=(2 * (n_triplets - found.size) + 64, 3)),
                       axis=1)
        draw = draw[(draw[:, 0] < draw[:, 1]) & (draw[:, 1] < draw[:, 2])]
        codes = (draw[:, 0] * n3 + draw[:, 1]) * n3 + draw[:, 2]
        # keep first occurrences in draw order so the subset does not depend on sorting
        merged = np.concatenate([found, codes])
        _, first = np.unique(merged, return_index=True)
        found = merged[np.sort(first)]
    codes = np.sort(found[:n_triplets])
    return np.column_stack([codes // (n3 * n3), (codes // n3) % n3, codes % n3]).astype(np.int64)


def _bitsets(v: np.ndarray) -> np.ndarray:
    """Columns of a 0/1 (T, N) array as bit sets: uint64 array (N, ceil(T / 64))."""
    packed = np.packbits(v.T.astype(bool), axis=1)  # (N, ceil(T/8)) uint8
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)


def connected_corr3(v: np.ndarray, triplets: np.ndarray, *,
                    moments2: np.ndarray | None = None, chunk: int = 20000) -> np.ndarray:
    """Connected 3-point correlations ``C_ijk = <(v_i - m_i)(v_j - m_j)(v_k - m_k)>``.

    Uses the set's own means ``m`` and the exact expansion
    ``<v_i v_j v_k> - m_i <v_j v_k> - m_j <v_i v_k> - m_k <v_i v_j> + 2 m_i m_j m_k``; the
    triple moments are exact popcounts of bit-set intersections.

    Parameters
    ----------
    v
        Samples, (n_samples, n_neurons), 0/1.
    triplets
        (n_triplets, 3) integer indices (any distinct triples).
    moments2
        Optional precomputed :func:`second_moments` of ``v``.
    chunk
        Triplets per vectorised block (memory bound).

    Returns
    -------
    numpy.ndarray
        float64, shape (n_triplets,).
    """
    v = _as_binary(v, "v")
    t = np.asarray(triplets)
    n = v.shape[1]
    if t.ndim != 2 or t.shape[1] != 3:
        raise ValueError(f"triplets must have shape (n, 3); got {t.shape}")
    if t.size and (t.min() < 0 or t.max() >= n):
        raise ValueError(f"triplet indices must lie in [0, {n}); got range [{t.min()}, {t.max()}]")
    m = v.mean(axis=0, dtype=np.float64)
    mom2 = second_moments(v) if moments2 is None else moments2
    i, j, k = t[:, 0], t[:, 1], t[:, 2]
    triple = _triple_moments(v, t, chunk=chunk)
    return (triple - m[i] * mom2[j, k] - m[j] * mom2[i, k] - m[k] * mom2[i, j]
            + 2.0 * m[i] * m[j] * m[k])


def _triple_moments(v: np.ndarray, t: np.ndarray, *, chunk: int = 20000) -> np.ndarray:
    """``<v_i v_j v_k>`` for the rows of ``t``: exact popcounts of bit-set intersections."""
    bits = _bitsets(v)
    triple = np.empty(t.shape[0], dtype=np.float64)
    for s in range(0, t.shape[0], chunk):
        sl = slice(s, s + chunk)
        both = bits[t[sl, 0]] & bits[t[sl, 1]] & bits[t[sl, 2]]
        triple[sl] = np.bitwise_count(both).sum(axis=1, dtype=np.int64)
    return triple / v.shape[0]


def pca_axes(train: np.ndarray, *, n_components: int = 2) -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray]:
    """Principal axes of the centred training data.

    Returns
    -------
    axes : numpy.ndarray
        (n_neurons, n_components), orthonormal columns, sign fixed so that each axis's
        largest-magnitude component is positive.
    mean : numpy.ndarray
        Training means (the centre).
    explained : numpy.ndarray
        Fraction of the total variance along each axis.
    """
    train = _as_binary(train, "train")
    if not 1 <= n_components <= train.shape[1]:
        raise ValueError(f"n_components must be in [1, {train.shape[1]}]; got {n_components}")
    cov = covariances(train)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1][:n_components]
    axes = evecs[:, order]
    flip = np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(n_components)])
    axes = axes * np.where(flip == 0, 1.0, flip)
    total = float(np.trace(cov))
    explained = evals[order] / total if total > 0 else np.zeros(n_components)
    return axes, firing_rates(train), explained


def activity_histogram(v: np.ndarray) -> np.ndarray:
    """``P(K)`` of the population activity ``K = sum_i v_i``, K = 0..n_neurons, float64."""
    v = _as_binary(v, "v")
    k = v.sum(axis=1, dtype=np.int64)
    return np.bincount(k, minlength=v.shape[1] + 1) / v.shape[0]


def effective_fields(rbm: RBM, v: np.ndarray, *, max_elements: int = 2**22) -> np.ndarray:
    """Exact effective fields ``h_eff_i(v)`` with ``P(v_i = 1 | v_-i) = sigmoid(h_eff_i)``.

    ``h_eff_i = a_i + sum_mu [softplus(b_mu + W_imu + x_mu^(-i)) - softplus(b_mu + x_mu^(-i))]``
    with ``x_mu^(-i) = sum_{j != i} W_jmu v_j`` (docs/methods.md §5), in float64 on the RBM's
    device.

    Parameters
    ----------
    rbm
        The model.
    v
        States, (n_samples, n_visible), 0/1.
    max_elements
        Largest (batch x visible x hidden) block evaluated at once.

    Returns
    -------
    numpy.ndarray
        float64, shape (n_samples, n_visible).
    """
    v = _as_binary(v, "v")
    if v.shape[1] != rbm.n_visible:
        raise ValueError(f"v has {v.shape[1]} neurons but the RBM has {rbm.n_visible}")
    r = rbm.to(dtype=torch.float64)
    W, a, b = r.W, r.a, r.b
    step = max(1, max_elements // max(1, rbm.n_visible * rbm.n_hidden))
    out = np.empty(v.shape, dtype=np.float64)
    with torch.no_grad():
        for s in range(0, v.shape[0], step):
            x = torch.as_tensor(v[s:s + step]).to(device=r.device, dtype=torch.float64)
            pre = b + x @ W  # (B, M)
            rest = pre[:, None, :] - x[:, :, None] * W[None]  # (B, N, M): b + x^(-i)
            out[s:s + step] = (a + (F.softplus(rest + W[None]) - F.softplus(rest)).sum(-1)
                               ).cpu().numpy()
    return out


def heff_calibration(heff: Mapping[str, np.ndarray], v: Mapping[str, np.ndarray], *,
                     n_bins: int) -> dict[str, np.ndarray]:
    """Observed ``P(v_i = 1)`` vs mean ``sigmoid(h_eff)`` in bins of ``h_eff``.

    Bins are common to all sets: equal-count bins (quantiles) of the pooled ``h_eff`` values
    over neurons x samples of every set (duplicate edges merged), so each bin holds data.

    Parameters
    ----------
    heff
        Per set, (n_samples, n_neurons) effective fields.
    v
        Per set, the matching 0/1 states.
    n_bins
        Number of bins requested.

    Returns
    -------
    dict
        ``edges`` (n+1,), and per-bin arrays of shape (n_sets, n) in the mapping's order:
        ``count``, ``fraction`` (observed fraction of v_i = 1), ``sem``
        (``sqrt(f (1 - f) / count)``, binomial; it ignores correlations between entries of a
        bin), ``sigma`` (mean sigmoid(h_eff)), ``heff`` (mean h_eff).
    """
    _check_positive_int(n_bins, "heff_bins", minimum=2)
    names = list(heff)
    if set(names) != set(v):
        raise ValueError(f"heff and v must have the same sets; got {names} and {list(v)}")
    for name in names:
        if np.shape(heff[name]) != np.shape(v[name]):
            raise ValueError(f"set {name!r}: heff shape {np.shape(heff[name])} != v shape "
                             f"{np.shape(v[name])}")
    pooled = np.concatenate([np.asarray(heff[n], dtype=np.float64).ravel() for n in names])
    edges = np.unique(np.quantile(pooled, np.linspace(0, 1, n_bins + 1)))
    if edges.size < 2:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    nb = edges.size - 1
    res = {key: np.zeros((len(names), nb)) for key in ("count", "fraction", "sem", "sigma",
                                                          "heff")}
    for s, name in enumerate(names):
        h = np.asarray(heff[name], dtype=np.float64).ravel()
        x = np.asarray(v[name], dtype=np.float64).ravel()
        idx = np.clip(np.searchsorted(edges, h, side="right") - 1, 0, nb - 1)
        cnt = np.bincount(idx, minlength=nb).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.bincount(idx, weights=x, minlength=nb) / cnt
            res["sigma"][s] = np.bincount(idx, weights=1 / (1 + np.exp(-h)), minlength=nb) / cnt
            res["heff"][s] = np.bincount(idx, weights=h, minlength=nb) / cnt
            res["sem"][s] = np.sqrt(frac * (1 - frac) / cnt)
        res["count"][s] = cnt
        res["fraction"][s] = frac
    res["edges"] = edges
    return res


# --------------------------------------------------------------------------------------------
# comparisons
# --------------------------------------------------------------------------------------------
def compare_statistic(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Pearson r, least-squares fit ``y = slope * x + intercept`` and ``msd = mean((x-y)^2)``.

    ``x`` is the training statistic, ``y`` that of another set. r and slope are NaN when ``x``
    (or, for r, ``y``) has zero variance.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"need two equal-length statistics with >= 2 entries; got {x.size}, "
                         f"{y.size}")
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy, sxy = float(dx @ dx), float(dy @ dy), float(dx @ dy)
    slope = sxy / sxx if sxx > 0 else math.nan
    r = sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else math.nan
    intercept = float(y.mean() - slope * x.mean()) if sxx > 0 else math.nan
    return {"r": r, "slope": slope, "intercept": intercept, "msd": float(np.mean((x - y) ** 2))}


def normalised_score(d_independent: float, d_generated: float, d_test: float, *,
                     min_gap: float = MIN_SCORE_GAP) -> float:
    """``(d_ind - d_gen) / (d_ind - d_test)``: 0 = independent-site floor, 1 = test ceiling.

    NaN when the gap ``d_ind - d_test`` is not larger than ``min_gap * d_ind`` (degenerate: the
    floor and the ceiling cannot be told apart).
    """
    gap = d_independent - d_test
    if not np.isfinite(gap) or gap <= min_gap * d_independent or gap <= 0:
        return math.nan
    return float((d_independent - d_generated) / gap)


def score_reason(d_independent: float, d_generated: float, d_test: float, *, score: float,
                 n_test: int, n_generated: int, min_gap: float = MIN_SCORE_GAP) -> str:
    """Why a score is what it is: ``in range``, or the reason it is NaN, negative or above 1.

    Parameters
    ----------
    d_independent, d_generated, d_test
        Mean squared differences d(train, X) of the statistic (see :func:`normalised_score`).
    score
        The score computed from them.
    n_test, n_generated
        Samples in the test and generated sets (their sampling noise enters the distances).
    min_gap
        The gap threshold of :func:`normalised_score`.

    Returns
    -------
    str
        One sentence with the numbers; ``"in range"`` when ``0 <= score <= 1``.
    """
    dists = (f"d(train, indep) = {d_independent:.3g}, d(train, gen) = {d_generated:.3g}, "
             f"d(train, test) = {d_test:.3g}")
    if not np.isfinite(score):
        gap = d_independent - d_test
        if not np.isfinite(gap) or gap <= 0:
            return (f"undefined: the test set is no closer to train than independent samples "
                    f"({dists}): sampling noise dominates this statistic (data-limited)")
        return (f"undefined: the floor-to-ceiling gap d(train, indep) - d(train, test) = "
                f"{gap:.3g} is {gap / d_independent:.1%} of d(train, indep), under "
                f"{min_gap:.0%} ({dists}): floor and ceiling cannot be told apart within "
                "sampling noise (data-limited)")
    if score < 0:
        return (f"negative: generated samples are further from train than independent samples "
                f"({dists}): the model distorts this statistic beyond the independent-site "
                "model (check the equilibrium check and the training convergence)")
    if score > 1:
        why = ("the generated set has more samples than the test set "
               f"({n_generated} vs {n_test}: less sampling noise), "
               if n_generated > n_test else "")
        return (f"above 1: generated samples are closer to train than the test set ({dists}); "
                f"expected when {why}the model fits train-specific fluctuations (overfitting) "
                "or the test split differs from the train split (drift)")
    return "in range"


def split_comparison(energy: RBM | Callable[[np.ndarray], np.ndarray], train: np.ndarray,
                     test: np.ndarray) -> dict[str, float]:
    """Do the train and test splits differ? Mean population activity and the log-likelihood gap.

    For each split (time-ordered bins): the mean population activity ``K = sum_i v_i`` and the
    mean energy ``F(v)`` of the model (float64; the RBM's marginal free energy, or any model's
    energy through a callable). The test-minus-train log-likelihood is
    ``mean F_train - mean F_test`` (log Z cancels). Standard errors account
    for the autocorrelation of the series: ``se = sqrt(Var x * tau / n)`` with ``tau`` the
    integrated autocorrelation time (:func:`spikerbm.diagnostics.integrated_autocorr_time`,
    docs/methods.md §9; bins of one split are treated as one series).

    Parameters
    ----------
    energy
        The RBM, or ``v (n, N) 0/1 -> (n,)`` float64 energies up to a constant (as in
        :func:`score_statistics`).
    train, test
        Binary rasters (bins, neurons) of the two splits, in time order.

    Returns
    -------
    dict
        ``k_mean_train``, ``k_mean_test``, ``k_mean_train_se``, ``k_mean_test_se`` (active
        neurons per bin), ``k_shift_z`` ((test - train) / combined s.e.),
        ``ll_test_minus_train``, ``ll_test_minus_train_se`` (nats per sample) and
        ``ll_gap_z``.
    """
    if isinstance(energy, RBM):
        rbm64 = energy.to(dtype=torch.float64)

        def energy(v: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return rbm_mod.free_energy(rbm64, torch.as_tensor(v).to(rbm64.device)).cpu().numpy()
    out: dict[str, float] = {}
    mean, se = {}, {}
    for name, v in (("train", train), ("test", test)):
        k = v.sum(axis=1, dtype=np.int64).astype(np.float64)
        # batches of 8192 bins bound the float64 working memory
        f = np.concatenate([np.asarray(energy(v[s:s + 8192]), dtype=np.float64)
                            for s in range(0, v.shape[0], 8192)])
        for key, x in (("k", k), ("f", f)):
            tau, _ = integrated_autocorr_time(x)
            mean[key, name] = float(x.mean())
            se[key, name] = float(math.sqrt(x.var() * max(tau, 1.0) / x.size))
    for name in ("train", "test"):
        out[f"k_mean_{name}"] = mean["k", name]
        out[f"k_mean_{name}_se"] = se["k", name]
    k_se = math.hypot(se["k", "train"], se["k", "test"])
    out["k_shift_z"] = ((mean["k", "test"] - mean["k", "train"]) / k_se if k_se > 0
                        else math.nan)
    gap = mean["f", "train"] - mean["f", "test"]
    gap_se = math.hypot(se["f", "train"], se["f", "test"])
    out["ll_test_minus_train"] = gap
    out["ll_test_minus_train_se"] = gap_se
    out["ll_gap_z"] = gap / gap_se if gap_se > 0 else math.nan
    return out


# --------------------------------------------------------------------------------------------
# effective number of independent generated samples (docs/methods.md §5)
# --------------------------------------------------------------------------------------------
def effective_samples(trace: np.ndarray, n_samples: int | None = None) -> tuple[float, float]:
    """Integrated autocorrelation time and effective sample size of a mean over chains.

    ``trace[t, c]`` is a scalar observable on sample ``t`` of independent chain ``c`` (samples
    of one chain equally spaced). With the project's estimator
    (:func:`spikerbm.diagnostics.integrated_autocorr_time`: biased ``1/n`` autocovariance about
    the global mean, Sokal window), ``tau = 1 + 2 sum_t (1 - t/L) rho(t)`` over the ``L``
    samples of a chain when the window is not reached inside the chain, which is exactly the
    factor by which the variance of the mean exceeds the independent value for chains of
    length ``L``; with a window, the usual ``1 + 2 sum_{t<=M} rho(t)``. Hence
    ``Var(mean) = Var(x) tau / n = Var(x) / n_eff``.

    Parameters
    ----------
    trace
        (n_per_chain, n_chains) float; one row of samples per time point.
    n_samples
        Number of samples the mean runs over (default ``trace.size``; the statistics stage
        keeps ``n_samples`` of the ``n_per_chain x n_chains`` drawn).

    Returns
    -------
    tau : float
        In samples (units of the spacing of one chain's samples); 1 for a single sample per
        chain (independent chains).
    n_eff : float
        ``n_samples / max(tau, 1)``: anti-correlated samples are not credited.
    """
    trace = np.asarray(trace, dtype=np.float64)
    if trace.ndim != 2 or trace.size == 0:
        raise ValueError(f"trace must have shape (n_per_chain, n_chains); got {trace.shape}")
    n = trace.size if n_samples is None else _check_positive_int(n_samples, "n_samples")
    tau = integrated_autocorr_time(trace)[0] if trace.shape[0] >= 2 else 1.0
    return float(tau), float(n / max(tau, 1.0))


def _centred(v: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """``x = v - <v>`` as float64 on ``device``."""
    x = torch.as_tensor(v).to(device=device, dtype=torch.float64)
    return x - x.mean(0)


def summed_terms(v: np.ndarray, *, device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """Per-sample sums of each statistic's terms over all its elements.

    With ``x = v - <v>``: ``rate`` ``sum_i x_i``, ``covariance`` ``sum_{i<j} x_i x_j``, ``corr3``
    ``sum_{i<j<k} x_i x_j x_k``; their means over the samples are the sums of all rates,
    covariances and 3-point correlations. The pair and triple sums come from the power sums
    ``p_k = sum_i x_i^k`` by Newton's identities (``e2 = (p1^2 - p2)/2``, ``e3 = (p1^3 -
    3 p1 p2 + 2 p3)/6``), O(N) per sample. They carry the collective (population-wide)
    fluctuations, the slowest mode of a coupled population.

    Parameters
    ----------
    v
        Samples (n_samples, n_neurons), 0/1.
    device
        Where the sums are formed (float64).

    Returns
    -------
    dict
        ``rate``, ``covariance``, ``corr3``: float64 (n_samples,).
    """
    x = _centred(_as_binary(v, "v"), device)
    p1, p2, p3 = ((x**k).sum(1) for k in (1, 2, 3))
    out = {"rate": p1, "covariance": (p1**2 - p2) / 2,
           "corr3": (p1**3 - 3 * p1 * p2 + 2 * p3) / 6}
    return {k: val.cpu().numpy() for k, val in out.items()}


def element_variances(v: np.ndarray, stat: str, *, pairs: tuple | None = None,
                      triplets: np.ndarray | None = None,
                      device: torch.device | str = "cpu") -> np.ndarray:
    """Variance over samples of each element's term ``y_e`` (``x = v - <v>``).

    ``y`` is ``x_i`` (rate), ``x_i x_j`` (covariance, ``pairs``) or ``x_i x_j x_k`` (corr3,
    ``triplets``); the statistic is the mean of ``y``, so its Monte Carlo variance is
    ``Var(y) / n_eff``. Exact from the moments of the 0/1 samples: with ``x_i^2 = a_i v_i +
    m_i^2``, ``a_i = 1 - 2 m_i``, ``<x_i^2 x_j^2 ...>`` is a polynomial in the means and the
    pair and triple moments (triple moments by bit-set popcounts, as in
    :func:`connected_corr3`), O(elements) after the moments.

    Parameters
    ----------
    v
        Samples (n_samples, n_neurons), 0/1.
    stat
        ``rate``, ``covariance`` or ``corr3``.
    pairs, triplets
        Index arrays ``(i, j)`` (:func:`upper_pairs`) / (n, 3) triplets, for the statistic.
    device
        Where the pair moments are computed.

    Returns
    -------
    numpy.ndarray
        float64 (n_elements,), clipped at 0 (round-off).
    """
    v = _as_binary(v, "v")
    m = v.mean(axis=0, dtype=np.float64)
    a, q = 1 - 2 * m, m**2
    if stat == "rate":
        return m * (1 - m)
    mom2 = second_moments(v, device=device)
    if stat == "covariance":
        i, j = (np.asarray(p) for p in pairs)
        c = mom2[i, j] - m[i] * m[j]
        x4 = a[i] * a[j] * mom2[i, j] + a[i] * m[i] * q[j] + a[j] * m[j] * q[i] + q[i] * q[j]
        return np.maximum(x4 - c**2, 0.0)
    if stat == "corr3":
        t = np.asarray(triplets)
        i, j, k = t[:, 0], t[:, 1], t[:, 2]
        m3 = _triple_moments(v, t)
        c = (m3 - m[i] * mom2[j, k] - m[j] * mom2[i, k] - m[k] * mom2[i, j]
             + 2.0 * m[i] * m[j] * m[k])
        x6 = (a[i] * a[j] * a[k] * m3 + a[i] * a[j] * q[k] * mom2[i, j]
              + a[i] * a[k] * q[j] * mom2[i, k] + a[j] * a[k] * q[i] * mom2[j, k]
              + a[i] * m[i] * q[j] * q[k] + a[j] * m[j] * q[i] * q[k]
              + a[k] * m[k] * q[i] * q[j] + q[i] * q[j] * q[k])
        return np.maximum(x6 - c**2, 0.0)
    raise ValueError(f"stat must be one of {STATS}; got {stat!r}")


def element_terms_dot(v: np.ndarray, stat: str, weights: np.ndarray, *,
                      device: torch.device | str = "cpu", pairs: tuple | None = None,
                      triplets: np.ndarray | None = None) -> np.ndarray:
    """``z_t = sum_e w_e y_{e,t}`` per sample (``y`` as in :func:`element_variances`).

    The linear observable through which the noise of a statistic enters a weighted sum over
    its elements (the first-order change of a mean squared difference). Cost: one
    (samples x N x N) product for covariances, samples x triplets products for corr3.

    Parameters
    ----------
    v
        Samples (n_samples, n_neurons), 0/1.
    stat
        ``rate``, ``covariance`` or ``corr3``.
    weights
        ``w_e``, one per element (neurons, ``pairs`` or ``triplets``).
    device
        Where the products run (float64).
    pairs, triplets
        As in :func:`element_variances`.

    Returns
    -------
    numpy.ndarray
        float64 (n_samples,).
    """
    x = _centred(_as_binary(v, "v"), device)
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64), device=device)
    if stat == "rate":
        return (x @ w).cpu().numpy()
    if stat == "covariance":
        i, j = (torch.as_tensor(np.asarray(p), device=device, dtype=torch.long) for p in pairs)
        d = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=device)
        d[i, j] = w
        return ((x @ d) * x).sum(1).cpu().numpy()  # sum_{i<j} w_ij x_i x_j
    if stat == "corr3":
        t = torch.as_tensor(np.asarray(triplets), device=device, dtype=torch.long)
        xt = x.T.contiguous()  # neuron-major: a triplet's three rows are contiguous
        z = torch.zeros(x.shape[0], dtype=torch.float64, device=device)
        chunk = max(1, 2**22 // x.shape[0])
        for s in range(0, t.shape[0], chunk):
            tt = t[s: s + chunk]
            z += w[s: s + chunk] @ (xt[tt[:, 0]] * xt[tt[:, 1]] * xt[tt[:, 2]])
        return z.cpu().numpy()
    raise ValueError(f"stat must be one of {STATS}; got {stat!r}")


def element_gram(v: np.ndarray, stat: str, *, device: torch.device | str = "cpu",
                 pairs: tuple | None = None, triplets: np.ndarray | None = None) -> np.ndarray:
    """Gram matrix ``G_ts = sum_e (y_te - <y_e>)(y_se - <y_e>)`` of the element terms.

    ``y`` as in :func:`element_variances`, centred by the samples' own means. For two
    independent samples ``t != s``, ``E[G_ts^2] = ||C||_F^2``, the squared Frobenius norm of the
    covariance ``C`` of the terms over elements, without forming the (elements x elements)
    ``C``. Covariances need all pairs ``i < j`` (their sum is
    ``((x_t . x_s)^2 - sum_i x_ti^2 x_si^2) / 2``); 3-point terms are formed chunk by chunk
    (samples^2 x triplets products).

    Parameters
    ----------
    v
        Samples (n_samples, n_neurons), 0/1.
    stat
        ``rate``, ``covariance`` (all pairs) or ``corr3`` (``triplets``).
    device
        Where the products run (float64).
    pairs, triplets
        As in :func:`element_variances`.

    Returns
    -------
    numpy.ndarray
        float64 (n_samples, n_samples).
    """
    x = _centred(_as_binary(v, "v"), device)
    n, n_neurons = x.shape
    if stat == "rate":
        return (x @ x.T).cpu().numpy()  # the terms x_i are centred already
    if stat == "covariance":
        if len(pairs[0]) != n_neurons * (n_neurons - 1) // 2:
            raise ValueError("element_gram of covariances needs all pairs i < j")
        c = x.T @ x / n  # the terms' means <x_i x_j>
        iu = torch.triu_indices(n_neurons, n_neurons, 1, device=x.device)
        x2 = x * x
        g = ((x @ x.T) ** 2 - x2 @ x2.T) / 2
        u = ((x @ torch.triu(c, 1)) * x).sum(1)  # sum_{i<j} c_ij x_ti x_tj
        g = g - u[:, None] - u[None, :] + (c[iu[0], iu[1]] ** 2).sum()
        return g.cpu().numpy()
    if stat == "corr3":
        t = torch.as_tensor(np.asarray(triplets), device=device, dtype=torch.long)
        xt = x.T.contiguous()
        g = torch.zeros(n, n, dtype=torch.float64, device=device)
        chunk = max(1, 2**22 // n)
        for s in range(0, t.shape[0], chunk):
            tt = t[s: s + chunk]
            y = xt[tt[:, 0]] * xt[tt[:, 1]] * xt[tt[:, 2]]  # (chunk, n)
            y = y - y.mean(1, keepdim=True)
            g += y.T @ y
        return g.cpu().numpy()
    raise ValueError(f"stat must be one of {STATS}; got {stat!r}")


# --------------------------------------------------------------------------------------------
# the whole stage
# --------------------------------------------------------------------------------------------
def _subset(v: np.ndarray, n: int, seed: int, key: str) -> np.ndarray:
    if v.shape[0] <= n:
        return v
    rng = np.random.default_rng(derive_seed(seed, "subset", key))
    return v[np.sort(rng.choice(v.shape[0], size=n, replace=False))]


def _msd_variance(v: np.ndarray, order: np.ndarray, stat: str, delta: np.ndarray, *,
                  n_eff: float, device: torch.device | str, where: dict) -> float:
    """Variance of ``d = mean_e (x_e - y_e)^2`` from the sampling noise of the ``y_e``.

    ``v`` holds the samples behind ``y`` (each element the mean of its term over them),
    ``order[t, c]`` the index of sample ``t`` of chain ``c``, ``delta`` the observed ``y - x``,
    ``n_eff`` the effective number of samples of the statistic (docs/methods.md §5). With
    ``y_e = true_e + eps_e`` and ``S`` the covariance of the ``eps_e``: ``d`` moves by
    ``(2/E) sum_e delta_e eps_e`` (variance ``(2/E)^2 Var(z) tau_z / n`` with the per-sample
    observable ``z = sum_e delta_e y_e``; the observed ``delta`` contains the noise, which
    adds ``(2/E)^2 tr(S^2)`` on average) and by ``mean_e eps_e^2`` (variance ``2 tr(S^2) / E^2``
    for Gaussian noise); ``tr(S^2) = ||C||_F^2 / n_eff^2`` with ``||C||_F^2`` the mean of
    ``G_ts^2`` over pairs of samples of different chains (:func:`element_gram`). Returned: the
    sum of both, which exceeds the Gaussian value by ``4 tr(S^2) / E^2`` on average, a margin
    for the heavier tails of products of 0/1 terms (measured in tests/test_statistics.py).
    ``z`` uses the samples of the first chains up to ``MAX_TERM_PRODUCTS`` sample x element
    terms, the Gram matrix up to ``MAX_GRAM_PRODUCTS`` products and ``MAX_GRAM_SAMPLES``
    samples (at least 2 chains each).
    """
    e, rows = delta.size, order.shape[0]
    sub = order[:, : max(2, MAX_TERM_PRODUCTS // (rows * e))]
    z = element_terms_dot(v[sub.ravel()], stat, delta, device=device, **where)
    tau_z = effective_samples(z.reshape(sub.shape))[0]
    first = (2 / e) ** 2 * z.var() * max(tau_z, 1.0) / order.size
    width = e if stat == "corr3" else v.shape[1]  # products per pair of samples
    n_gram = min(math.isqrt(MAX_GRAM_PRODUCTS // width), MAX_GRAM_SAMPLES)
    gram_sub = order[:, : max(2, n_gram // rows)]
    g = element_gram(v[gram_sub.ravel()], stat, device=device, **where)
    chain = np.tile(np.arange(gram_sub.shape[1]), rows)
    frob = float(np.mean(g[chain[:, None] != chain[None, :]] ** 2))
    return first + 2 * frob / (e * n_eff) ** 2


def _monte_carlo_error(sets: Mapping[str, np.ndarray], stats: Mapping[str, np.ndarray],
                       msd: np.ndarray, score: np.ndarray, *, n_chains: int | None,
                       energy: np.ndarray, pairs: tuple, triplets: np.ndarray,
                       device: torch.device | str) -> dict:
    """Effective sample sizes of the generated statistics and the Monte Carlo error of the
    scores and of each generated element (docs/methods.md §5).

    ``n_chains`` is the number of chains the generated samples come from, in the order of
    :func:`sample_equilibrium` (sample ``t * n_chains + c`` is sample ``t`` of chain ``c``);
    None for samples of unknown origin (everything NaN).
    """
    nan = np.full(len(STATS), np.nan)
    gen, ind = sets["generated"], sets["independent"]
    out = {"n_eff": nan.copy(), "tau_samples": nan.copy(), "score_std": nan.copy(),
           "n_eff_energy": math.nan, "tau_samples_energy": math.nan,
           "se": {st: np.full(stats[st].shape[1], np.nan) for st in STATS}}
    if not n_chains:
        return out
    n_gen = gen.shape[0]
    rows = n_gen // n_chains

    def by_chain(values: np.ndarray) -> np.ndarray:  # (samples per chain, chains)
        return values[: rows * n_chains].reshape(rows, n_chains) if rows else values[None]

    out["tau_samples_energy"], out["n_eff_energy"] = effective_samples(by_chain(energy), n_gen)
    summed = summed_terms(gen, device=device)
    where = {"rate": {}, "covariance": {"pairs": pairs}, "corr3": {"triplets": triplets}}
    order = by_chain(np.arange(n_gen))
    for a, st in enumerate(STATS):
        tau, n_eff = effective_samples(by_chain(summed[st]), n_gen)
        out["tau_samples"][a], out["n_eff"][a] = tau, n_eff
        var = element_variances(gen, st, device=device, **where[st])
        out["se"][st] = np.sqrt(var / n_eff)
        if not np.isfinite(score[a]):
            continue
        x = stats[st][0].astype(np.float64)
        delta = stats[st][SETS.index("generated")].astype(np.float64) - x
        var_gen = _msd_variance(gen, order, st, delta, n_eff=n_eff, device=device,
                                where=where[st])
        delta_ind = stats[st][SETS.index("independent")].astype(np.float64) - x
        n_ind = ind.shape[0]  # independent samples: every sample its own chain
        var_ind = _msd_variance(ind, np.arange(n_ind)[None], st, delta_ind, n_eff=n_ind,
                                device=device, where=where[st])
        d_test, d_gen, d_ind = msd[a]
        gap = d_ind - d_test
        out["score_std"][a] = math.sqrt(var_gen / gap**2
                                        + var_ind * ((d_gen - d_test) / gap**2) ** 2)
    return out


#: Keys of the ``statistics:`` config section that the workflow resolves before calling
#: :func:`compute_statistics` (``sampler: ptt`` builds a ladder from the trajectory file, at
#: most ``ptt_models`` checkpoints: scripts/statistics.py); not arguments of that function.
SAMPLER_KEYS = ("sampler", "ptt_models")


def gibbs_settings(section: Mapping[str, object]) -> dict[str, object]:
    """The ``statistics:`` config section as keyword arguments of :func:`compute_statistics`
    for a direct library call that samples with Gibbs (no PTT ladder).

    Raises
    ------
    ValueError
        When ``sampler`` is not ``gibbs``: PTT needs the workflow's trajectory input.
    """
    if section.get("sampler", "gibbs") != "gibbs":
        raise ValueError(f"statistics.sampler: {section['sampler']!r} needs the workflow (its "
                         "PTT ladder comes from the trajectory file); set statistics.sampler: "
                         "gibbs for a direct library call")
    return {k: v for k, v in section.items() if k not in SAMPLER_KEYS}


def compute_statistics(rbm: RBM, *, train: np.ndarray, test: np.ndarray, n_samples: int,
                       n_chains: int, burn_in_sweeps: int, thin_sweeps: int, n_triplets: int,
                       heff_bins: int, energy_bins: int, seed: int, tau_factor: float = 20.0,
                       z_max: float = 4.0, generated: np.ndarray | None = None,
                       neuron_coords: Mapping[str, np.ndarray] | None = None,
                       ladder: Sequence[RBM] | None = None,
                       ladder_updates: Sequence[int] | None = None) -> xr.Dataset:
    """Sample the model and compare its statistics with train and test data (docs/methods.md §5).

    Parameters
    ----------
    rbm
        The selected model, on the device where sampling and products should run.
    train, test
        Binary rasters (bins, neurons) of the two splits.
    n_samples
        Samples per set (train/test: a seeded random subset, or all bins when fewer).
    n_chains, burn_in_sweeps, thin_sweeps, tau_factor, z_max, ladder, ladder_updates
        Equilibrium sampling (Gibbs, or PTT over ``ladder``) and its check
        (:func:`sample_equilibrium`).
    n_triplets
        Random triplets for the 3-point correlations (all when there are fewer).
    heff_bins, energy_bins
        Number of bins of the h_eff calibration and of the energy histogram.
    seed
        Seed of every random choice (subsets, chains, independent samples, triplets).
    generated
        Optional precomputed model samples; when given, no sampling is run and the
        equilibration attrs record that (``equilibrated = -1``).
    neuron_coords
        Optional extra coordinates on ``neuron`` (e.g. ``unit_id``, ``area`` of the raster).

    Returns
    -------
    xarray.Dataset
        See docs/data-model.md, section ``statistics.nc``.
    """
    train = _as_binary(train, "train")
    test = _as_binary(test, "test")
    n = rbm.n_visible
    for name, arr in (("train", train), ("test", test)):
        if arr.shape[1] != n:
            raise ValueError(f"{name} has {arr.shape[1]} neurons but the RBM has {n} visible "
                             "units; use the raster the model was trained on")
    n_samples = _check_positive_int(n_samples, "n_samples", minimum=2)
    _check_positive_int(energy_bins, "energy_bins", minimum=2)
    device = rbm.device

    if generated is None:
        eq = sample_equilibrium(rbm, init_data=train, n_samples=n_samples, n_chains=n_chains,
                                burn_in_sweeps=burn_in_sweeps, thin_sweeps=thin_sweeps,
                                seed=derive_seed(seed, "sampling"), tau_factor=tau_factor,
                                z_max=z_max, ladder=ladder, ladder_updates=ladder_updates)
        gen = eq["samples"].values
        eq_attrs = dict(eq.attrs)
        traces = eq.drop_vars("samples")
    else:
        gen = _as_binary(generated, "generated")
        eq_attrs = {"equilibrated": -1, "equilibration_reason": "samples supplied by the caller"}
        traces = None
    rbm64 = rbm.to(dtype=torch.float64)  # energies from the full-precision parameters
    return score_statistics(
        train=train, test=test, generated=gen,
        energy=lambda v: rbm_mod.free_energy(rbm64, torch.as_tensor(v).to(device)).cpu().numpy(),
        effective_field=lambda v: effective_fields(rbm, v), n_samples=n_samples,
        n_triplets=n_triplets, heff_bins=heff_bins, energy_bins=energy_bins, seed=seed,
        device=device, equilibrium_attrs=eq_attrs, traces=traces, neuron_coords=neuron_coords)


def score_statistics(*, train: np.ndarray, test: np.ndarray, generated: np.ndarray,
                     energy: Callable[[np.ndarray], np.ndarray],
                     effective_field: Callable[[np.ndarray], np.ndarray], n_samples: int,
                     n_triplets: int, heff_bins: int, energy_bins: int, seed: int,
                     device: torch.device | str = "cpu",
                     equilibrium_attrs: Mapping[str, object] | None = None,
                     traces: xr.Dataset | None = None,
                     neuron_coords: Mapping[str, np.ndarray] | None = None) -> xr.Dataset:
    """Score samples of any model against train and test data (docs/methods.md §5).

    The scoring half of :func:`compute_statistics`, model-agnostic: the model enters only
    through its samples and two functions, so an RBM and the pairwise baseline
    (:mod:`spikerbm.pairwise`) are scored by the same code on the same data subsets (same
    ``seed``: same train/test subsets, independent-site samples and triplets).

    Parameters
    ----------
    train, test
        Binary rasters (bins, neurons) of the two splits.
    generated
        Equilibrium samples of the model, (n, neurons), 0/1.
    energy
        ``v (n, N) 0/1 -> (n,)`` float64: the model's energy of each state, up to a constant
        (the RBM's marginal free energy; the Ising energy of the pairwise model).
    effective_field
        ``v (n, N) 0/1 -> (n, N)`` float64: ``h_eff_i(v) = logit P(v_i = 1 | v_-i)`` under the
        model (its exact conditional activity).
    n_samples, n_triplets, heff_bins, energy_bins, seed
        As in :func:`compute_statistics`.
    device
        Where the pair-count products run.
    equilibrium_attrs
        Attributes of the sampling and its equilibration check, copied into the output
        (default: ``equilibrated = -1``, samples supplied by the caller).
    traces
        Optional ``trace_energy`` / ``trace_k`` of the sampling, merged into the output.
    neuron_coords
        Optional extra coordinates on ``neuron``.

    Returns
    -------
    xarray.Dataset
        See docs/data-model.md, section ``statistics.nc``.
    """
    train = np.ascontiguousarray(_as_binary(train, "train"))  # (torch needs >= 0 strides)
    test = np.ascontiguousarray(_as_binary(test, "test"))
    gen = np.ascontiguousarray(_as_binary(generated, "generated"))
    n = train.shape[1]
    for name, arr in (("test", test), ("generated", gen)):
        if arr.shape[1] != n:
            raise ValueError(f"{name} has {arr.shape[1]} neurons but train has {n}; score "
                             "samples of the model trained on this raster")
    n_samples = _check_positive_int(n_samples, "n_samples", minimum=2)
    _check_positive_int(energy_bins, "energy_bins", minimum=2)
    eq_attrs = dict(equilibrium_attrs if equilibrium_attrs is not None else
                    {"equilibrated": -1, "equilibration_reason": "samples supplied by the caller"})
    rates_train = firing_rates(train)
    rng = np.random.default_rng(derive_seed(seed, "independent"))
    indep = (rng.random((gen.shape[0], n)) < rates_train).astype(np.uint8)
    sets = {
        "train": _subset(train, n_samples, seed, "train"),
        "test": _subset(test, n_samples, seed, "test"),
        "generated": gen,
        "independent": indep,
    }
    n_used = np.array([sets[s].shape[0] for s in SETS])

    pi, pj = upper_pairs(n)
    triplets = sample_triplets(n, n_triplets, seed=seed)
    axes, centre, explained = pca_axes(train)
    rate, cov, c3, proj, pk, energies = [], [], [], [], [], []
    for s in SETS:
        v = sets[s]
        m2 = second_moments(v, device=device)
        m = v.mean(axis=0, dtype=np.float64)
        rate.append(m)
        cov.append((m2 - np.outer(m, m))[pi, pj].astype(np.float32))
        c3.append(connected_corr3(v, triplets, moments2=m2).astype(np.float32))
        p = np.full((n_used.max(), 2), np.nan, dtype=np.float32)
        p[: v.shape[0]] = (v - centre) @ axes
        proj.append(p)
        pk.append(activity_histogram(v))
        energies.append(np.asarray(energy(v), dtype=np.float64))

    ref = np.concatenate([energies[SETS.index(s)] for s in ("train", "test", "generated")])
    e_edges = np.linspace(ref.min(), ref.max(), energy_bins + 1)
    if e_edges[-1] <= e_edges[0]:
        e_edges = np.linspace(ref.min() - 0.5, ref.max() + 0.5, energy_bins + 1)
    width = np.diff(e_edges)
    e_hist = np.stack([np.histogram(e, bins=e_edges)[0] / (e.size * width) for e in energies])

    heff = {s: np.asarray(effective_field(sets[s]), dtype=np.float64) for s in HEFF_SETS}
    cal = heff_calibration(heff, {s: sets[s] for s in HEFF_SETS}, n_bins=heff_bins)

    stats = {"rate": np.stack(rate), "covariance": np.stack(cov), "corr3": np.stack(c3)}
    shape = (len(STATS), len(COMPARISONS))
    r_arr, slope_arr, icpt_arr, msd_arr = (np.full(shape, np.nan) for _ in range(4))
    score, ratio = np.full(len(STATS), np.nan), np.full(len(STATS), np.nan)
    attrs: dict[str, float | int | str] = {}
    for a, st in enumerate(STATS):
        x = stats[st][0]
        for b, other in enumerate(("test", "generated", "independent")):
            res = compare_statistic(x, stats[st][SETS.index(other)])
            r_arr[a, b], slope_arr[a, b] = res["r"], res["slope"]
            icpt_arr[a, b], msd_arr[a, b] = res["intercept"], res["msd"]
        d_test, d_gen, d_ind = msd_arr[a]
        score[a] = math.nan if st == "rate" else normalised_score(d_ind, d_gen, d_test)
        ratio[a] = d_gen / d_test if d_test > 0 else math.nan
        if st != "rate":
            attrs[f"score_{st}_reason"] = score_reason(
                d_ind, d_gen, d_test, score=score[a], n_test=int(n_used[SETS.index("test")]),
                n_generated=int(n_used[SETS.index("generated")]))
        for b, comp in enumerate(COMPARISONS[:2]):
            attrs[f"{st}_r_{comp}"] = float(r_arr[a, b])
            attrs[f"{st}_slope_{comp}"] = float(slope_arr[a, b])
        attrs[f"score_{st}"] = float(score[a])
        attrs[f"error_ratio_{st}"] = float(ratio[a])
    attrs["score_rate_note"] = ("undefined by design: the independent-site model reproduces "
                                "the train rates in expectation (see spikerbm.statistics)")
    noise = _monte_carlo_error(sets, stats, msd_arr, score, n_chains=eq_attrs.get("n_chains"),
                               energy=energies[SETS.index("generated")], pairs=(pi, pj),
                               triplets=triplets, device=device)
    for a, st in enumerate(STATS):
        attrs[f"n_eff_{st}"] = float(noise["n_eff"][a])
        attrs[f"tau_samples_{st}"] = float(noise["tau_samples"][a])
        attrs[f"score_{st}_std"] = float(noise["score_std"][a])
    attrs["n_eff_energy"] = noise["n_eff_energy"]
    attrs["tau_samples_energy"] = noise["tau_samples_energy"]
    attrs.update(split_comparison(energy, train, test))

    ds = xr.Dataset(
        {
            "n_used": ("set", n_used, {"long_name": "samples per set"}),
            "rate": (("set", "neuron"), stats["rate"], {"units": "spike probability per bin"}),
            "covariance": (("set", "pair"), stats["covariance"], {"units": "1"}),
            "corr3": (("set", "triplet"), stats["corr3"], {"units": "1"}),
            "pca": (("set", "sample", "pc"), np.stack(proj),
                    {"units": "1", "long_name": "projection on the train principal axes "
                     "(NaN-padded beyond n_used)"}),
            "pc_axis": (("neuron", "pc"), axes),
            "pc_explained": ("pc", explained, {"units": "fraction of variance"}),
            "p_k": (("set", "k"), np.stack(pk), {"units": "probability"}),
            "energy_density": (("set", "energy_bin"), e_hist, {"units": "1/energy"}),
            "mean_energy": ("set", np.array([e.mean() for e in energies]), {"units": "1"}),
            "heff_count": (("heff_set", "heff_bin"), cal["count"]),
            "heff_fraction": (("heff_set", "heff_bin"), cal["fraction"],
                              {"units": "probability"}),
            "heff_sem": (("heff_set", "heff_bin"), cal["sem"], {"units": "probability"}),
            "heff_sigma": (("heff_set", "heff_bin"), cal["sigma"], {"units": "probability"}),
            "heff_mean": (("heff_set", "heff_bin"), cal["heff"], {"units": "1"}),
            "pearson_r": (("stat", "comparison"), r_arr),
            "slope": (("stat", "comparison"), slope_arr),
            "intercept": (("stat", "comparison"), icpt_arr),
            "msd": (("stat", "comparison"), msd_arr, {"long_name": "mean squared difference"}),
            "score": ("stat", score),
            "score_std": ("stat", noise["score_std"],
                          {"long_name": "1-sigma Monte Carlo error of the score (generated and "
                           "independent samples; docs/methods.md section 5)"}),
            "n_eff": ("stat", noise["n_eff"], {"long_name": "effective number of independent "
                      "generated samples behind the statistic"}),
            "tau_samples": ("stat", noise["tau_samples"],
                            {"units": "samples (thin_sweeps sweeps apart in a chain)",
                             "long_name": "integrated autocorrelation time of the statistic's "
                             "summed terms along the chains"}),
            "rate_se_generated": ("neuron", noise["se"]["rate"],
                                  {"units": "spike probability per bin"}),
            "covariance_se_generated": ("pair", noise["se"]["covariance"].astype(np.float32),
                                        {"units": "1"}),
            "corr3_se_generated": ("triplet", noise["se"]["corr3"].astype(np.float32),
                                   {"units": "1"}),
            "error_ratio": ("stat", ratio),
        },
        coords={
            "set": list(SETS),
            "neuron": np.arange(n),
            "pair_i": ("pair", pi),
            "pair_j": ("pair", pj),
            "triplet_i": ("triplet", triplets[:, 0].astype(np.int32)),
            "triplet_j": ("triplet", triplets[:, 1].astype(np.int32)),
            "triplet_k": ("triplet", triplets[:, 2].astype(np.int32)),
            "pc": [1, 2],
            "k": np.arange(n + 1),
            "energy_lo": ("energy_bin", e_edges[:-1]),
            "energy_hi": ("energy_bin", e_edges[1:]),
            "heff_set": list(HEFF_SETS),
            "heff_lo": ("heff_bin", cal["edges"][:-1]),
            "heff_hi": ("heff_bin", cal["edges"][1:]),
            "stat": list(STATS),
            "comparison": list(COMPARISONS),
        },
        attrs={**eq_attrs, **attrs, "n_samples": n_samples, "n_triplets": len(triplets),
               "min_score_gap": MIN_SCORE_GAP},
    )
    if traces is not None:
        ds = ds.merge(traces)
    ds["generated_excerpt"] = (("excerpt", "neuron"), gen[:N_EXCERPT].astype(np.uint8),
                               {"long_name": "the first generated samples (independent chains)"})
    for name, values in (neuron_coords or {}).items():
        if len(values) != n:
            raise ValueError(f"neuron coordinate {name!r} has {len(values)} entries; need {n}")
        ds = ds.assign_coords({name: ("neuron", np.asarray(values))})
    return ds
