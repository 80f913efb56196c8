"""Parallel trajectory tempering against exact enumeration: stationary distribution, swap
acceptance, and a bimodal planted model where single-chain Gibbs is stuck and PTT is not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikerbm import rbm as R
from spikerbm.exact import binary_states
from spikerbm.ptt import TrajectoryTempering, ladder_indices
from spikerbm.sampling import Chains, Sampler

N, M = 7, 3  # odd distinct sizes
CODE = 2 ** np.arange(N)


def exact_p(rbm: R.RBM, n: int) -> np.ndarray:
    """p(v) over the 2^n states in the order of exact.binary_states (float64)."""
    logp = -R.free_energy(rbm, binary_states(n))
    return torch.softmax(logp, 0).numpy()


def trajectory(target: R.RBM, n_models: int) -> list[R.RBM]:
    """A ladder shaped like a training run: weights and hidden biases grow from ~0 (the
    independent-site start of PCD) to the target; the visible bias is the target's."""
    s = np.linspace(0.0, 1.0, n_models) ** 2
    return [R.RBM(float(x) * target.W, target.a.clone(), float(x) * target.b) for x in s]


def tiny_target(seed: int = 0) -> R.RBM:
    g = torch.Generator().manual_seed(seed)
    return R.RBM(1.5 * torch.randn(N, M, generator=g), 0.5 * torch.randn(N, generator=g),
                 0.5 * torch.randn(M, generator=g))


def chi2_stat(states: np.ndarray, p: np.ndarray) -> tuple[float, int]:
    n = states.shape[0]
    counts = np.bincount((states @ CODE[: states.shape[1]]).astype(int), minlength=p.size)
    keep = p * n >= 5  # pool the rare states into one cell (expected counts >= 5 everywhere)
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(p[keep], p[~keep].sum()) * n
    obs, exp = obs[exp > 0], exp[exp > 0]
    return float(((obs - exp) ** 2 / exp).sum()), int(obs.size - 1)


def test_ptt_is_a_chains_and_samples_the_target_exactly():
    """Final states of 4001 independent PTT slots vs exact p(v) of the target (2^7 states).

    Slots (chain c of every model) are independent Markov chains, so the target's final states
    are i.i.d.; after 60 steps of this fast-mixing model they are exact samples. Chi-square
    with the 99.9 % quantile (scipy): a correct sampler fails with probability 1e-3 (the seed is
    fixed, so the outcome is reproducible). Power: the same test rejects the ladder's
    second-to-last model's chains (a nearby but different distribution).
    """
    from scipy.stats import chi2

    target = tiny_target()
    ladder = trajectory(target, 6)
    g = torch.Generator().manual_seed(3)
    v0 = (torch.rand(4001, N, generator=g) < 0.5).float()
    ptt = TrajectoryTempering(ladder, v0=v0, generator=g)
    assert isinstance(ptt, Chains)
    ptt.sweep(target, k=60)
    stat, dof = chi2_stat(ptt.v.numpy(), exact_p(target, N))
    assert stat < chi2.ppf(0.999, dof), (stat, dof)
    other, dof2 = chi2_stat(ptt.chains_of(-2).numpy(), exact_p(target, N))
    assert other > chi2.ppf(0.999, dof2), "the test cannot tell neighbouring models apart"
    # every model's chains sample their own model (swaps keep the product distribution)
    stat, dof = chi2_stat(ptt.chains_of(2).numpy(), exact_p(ladder[2], N))
    assert stat < chi2.ppf(0.999, dof), (stat, dof)
    assert ptt.acceptance.shape == (5,) and np.all((ptt.acceptance > 0) & (ptt.acceptance <= 1))


def test_swap_acceptance_matches_exact_expectation():
    """Measured acceptance of one swap pass at equilibrium vs its exact expectation.

    For the first pair (0, 1) with x ~ p_0, y ~ p_1 independent, the probability of a swap is
    sum_{x,y} p_0(x) p_1(y) min(1, p_0(y) p_1(x) / (p_0(x) p_1(y))) (2^7 x 2^7 terms). The
    measured rate is the mean of 20001 independent Bernoulli draws: s.d. <= 0.5/sqrt(20001) =
    0.0035; tolerance 5 s.d. A swap rule with a sign error (e.g. E_l(x_l) - E_l(x_{l+1}) only)
    changes the rate by > 0.05 for this pair.
    """
    target = tiny_target(1)
    ladder = trajectory(target, 4)
    g = torch.Generator().manual_seed(4)
    v0 = (torch.rand(20001, N, generator=g) < 0.5).float()
    ptt = TrajectoryTempering(ladder, v0=v0, generator=g)
    ptt.sweep(k=30)
    ptt._chains.sweep(ptt.ladder, k=20)  # Gibbs only: decorrelate from the last swap pass
    rate = float(ptt.swap()[0])
    p0, p1 = exact_p(ladder[0], N), exact_p(ladder[1], N)
    ratio = np.outer(p0, p1)  # [x, y] = p0(x) p1(y); swapped: p0(y) p1(x) = ratio.T
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.minimum(1.0, ratio.T / ratio)
    exact = float((ratio * acc).sum())
    assert abs(rate - exact) < 5 * 0.5 / np.sqrt(20001), (rate, exact)
    assert 0.05 < exact < 0.95  # the pair is informative


def bimodal(n: int = 13, weight: float = 6.0, bias: float = -2.0,
            log_odds_b: float = float(np.log(7 / 3))) -> R.RBM:
    """One hidden unit coupled to every neuron: mode A (hidden off, K ~ Bin(n, σ(bias))) and
    mode B (hidden on, K ~ Bin(n, σ(bias + weight))), with log(p_B / p_A) = log_odds_b."""
    a = torch.full((n,), bias, dtype=torch.float64)
    sp = torch.nn.functional.softplus
    b = log_odds_b - n * (sp(torch.tensor(bias + weight)) - sp(torch.tensor(bias)))
    return R.RBM(torch.full((n, 1), weight, dtype=torch.float64), a,
                 torch.tensor([float(b)], dtype=torch.float64))


def test_bimodal_gibbs_is_stuck_and_ptt_recovers_mode_weights():
    """A planted two-mode model (13 neurons, one hidden unit): mode weights 0.3 / 0.7 exactly.

    All chains start in the empty state (mode A). Single-chain Gibbs needs the hidden unit to
    switch on from a typical mode-A state (K ~ 1.5), where p(h = 1 | v) = sigmoid(b + 6K) with
    b ~ -50: a switch takes ~1e5 sweeps or more. The PTT ladder is shaped like the training run on
    such data: the weight grows from 0 to 6 over 8 models while every model keeps the data's
    mode weights (the two modes split progressively, as the paper describes training), so
    mode-B states made by the early models climb to the target through swaps. The mode is
    K >= 7 (the two binomials overlap by < 1e-3 there; the exact P(K >= 7) comes from
    enumerating the 2^13 states). Equal cost: Gibbs runs as many sweeps per chain (8 x 150) as
    PTT runs over all models. Tolerance: chains are independent, so the fraction in mode B has
    s.d. sqrt(p (1 - p) / C) = 0.010 for C = 2001; PTT must be within 5 s.d. of the exact
    weight (measured: within 0.01 after ~80 steps here); Gibbs is > 50 s.d. away (measured:
    0.4 % of the chains left mode A).
    """
    target = bimodal()
    n = target.n_visible
    states = binary_states(n)
    p = exact_p(target, n)
    p_b = float(p[(states.sum(1) >= 7).numpy()].sum())
    assert abs(p_b - 0.7) < 0.01  # the planted weights, up to the overlap of the modes
    ladder = [bimodal(weight=float(w)).to(dtype=torch.float32) for w in np.linspace(0, 6, 8)]
    n_chains, steps = 2001, 150
    sd = np.sqrt(p_b * (1 - p_b) / n_chains)

    g = torch.Generator().manual_seed(5)
    v0 = torch.zeros(n_chains, n)
    ptt = TrajectoryTempering(ladder, v0=v0, generator=g)
    ptt.sweep(k=steps)
    frac_ptt = float((ptt.v.sum(1) >= 7).float().mean())
    assert abs(frac_ptt - p_b) < 5 * sd, (frac_ptt, p_b)
    assert np.all(ptt.acceptance > 0.3), ptt.acceptance

    g2 = torch.Generator().manual_seed(6)
    gibbs = Sampler(torch.device("cpu")).chains(v0, n_hidden=1, generator=g2)
    gibbs.sweep(ladder[-1], k=steps * len(ladder))
    frac_gibbs = float((gibbs.v.sum(1) >= 7).float().mean())
    assert abs(frac_gibbs - p_b) > 50 * sd, (frac_gibbs, p_b)


@pytest.mark.cuda
@pytest.mark.parametrize("fused", [False, True])
def test_cuda_ptt_samples_the_target_exactly(fused):
    """The exactness test on the GPU: float32 library products, and the fused bf16 kernels
    where every model of the ladder is a replica of one chains object (one launch per half
    sweep for the whole ladder). Parameters are rounded to bfloat16 first, so the exact p(v)
    is that of the model the kernel samples; chi-square at the 99.9 % quantile as above."""
    from scipy.stats import chi2

    from spikerbm import kernels

    if not torch.cuda.is_available() or (fused and not kernels.available("cuda")):
        pytest.skip("needs CUDA (and Triton for the fused kernels)")
    bf = [R.RBM(*(x.to(torch.bfloat16).to(torch.float64) for x in (m.W, m.a, m.b)))
          for m in trajectory(tiny_target(), 6)]
    g = torch.Generator(device="cuda").manual_seed(3)
    v0 = (torch.rand(8001, N, generator=g, device="cuda") < 0.5).float()
    sampler = Sampler.from_precision("bf16" if fused else "float32", "cuda")
    assert sampler.fused == fused
    ptt = TrajectoryTempering(bf, v0=v0, generator=g, sampler=sampler)
    assert ptt._chains.n_replicas == 6  # the ladder is one batch of replicas
    ptt.sweep(k=60)
    stat, dof = chi2_stat(ptt.v.float().cpu().numpy(), exact_p(bf[-1], N))
    assert stat < chi2.ppf(0.999, dof), (stat, dof)
    stat, dof = chi2_stat(ptt.chains_of(2).float().cpu().numpy(), exact_p(bf[2], N))
    assert stat < chi2.ppf(0.999, dof), (stat, dof)
    assert np.all((ptt.acceptance > 0) & (ptt.acceptance <= 1))
    state = ptt.state_dict()
    assert ("philox" in state) == fused and state["ladder_v"].shape == (6, 8001, N)


def test_state_dict_restores_bitwise():
    target = tiny_target(2)
    ladder = trajectory(target, 3)

    def make(seed: int) -> TrajectoryTempering:
        g = torch.Generator().manual_seed(seed)
        return TrajectoryTempering(ladder, v0=torch.zeros(11, N), generator=g, swap_every=2)

    a = make(7)
    a.sweep(k=5)
    state = a.state_dict()
    a.sweep(k=5)
    b = make(99)
    b.load_state_dict(state)
    b.sweep(k=5)
    assert torch.equal(a.v, b.v)
    assert np.allclose(a.acceptance, b.acceptance)


def test_ladder_indices_and_errors():
    ck = [0, 1, 2, 5, 10, 25, 60]
    assert ladder_indices(ck, 25) == [0, 1, 2, 3, 4, 5]
    assert ladder_indices(ck, 60, max_models=3) == [0, 3, 6]
    with pytest.raises(ValueError, match="not a saved checkpoint"):
        ladder_indices(ck, 7)
    with pytest.raises(ValueError, match="at least 2"):
        TrajectoryTempering([tiny_target()], v0=torch.zeros(3, N),
                            generator=torch.Generator())
    with pytest.raises(ValueError, match="beta must be 1"):
        TrajectoryTempering(trajectory(tiny_target(), 2), v0=torch.zeros(3, N),
                            generator=torch.Generator()).sweep(beta=0.5)


def test_statistics_equilibrium_check_fails_gibbs_and_passes_ptt_on_bimodal():
    """The statistics stage's sampler (statistics.sampler: gibbs | ptt) on the planted bimodal
    model: data chains start in mode A (empty states), "random" chains in mode B (all ones).
    Gibbs keeps each set in its mode, so the z-test between the two sets fails the
    equilibration check; PTT mixes both sets, passes it, puts 0.7 of the samples in mode B
    (s.d. of the fraction over 400 independent chains ~0.023; tolerance 5 s.d.) and stores the
    swap acceptance rates."""
    from spikerbm.statistics import sample_equilibrium

    target = bimodal()
    n = target.n_visible
    ladder = [bimodal(weight=float(w)).to(dtype=torch.float32) for w in np.linspace(0, 6, 8)]
    kwargs = dict(init_data=np.zeros((50, n), dtype=np.uint8), init_random=np.ones((1, n)),
                  n_samples=400, n_chains=400, burn_in_sweeps=200, thin_sweeps=5, seed=3)
    gibbs = sample_equilibrium(ladder[-1], **kwargs)
    assert gibbs.attrs["sampler"] == "gibbs" and gibbs.attrs["equilibrated"] == 0
    assert "disagree" in gibbs.attrs["equilibration_reason"]
    ptt = sample_equilibrium(ladder[-1], ladder=ladder, ladder_updates=list(range(8)), **kwargs)
    assert ptt.attrs["sampler"] == "ptt"
    assert abs(ptt.attrs["z_k"]) < 4 and abs(ptt.attrs["z_energy"]) < 4, ptt.attrs
    frac = float((ptt["samples"].values.sum(1) >= 7).mean())
    assert abs(frac - 0.7) < 5 * np.sqrt(0.21 / 400), frac
    assert ptt["ptt_acceptance"].shape == (7,)
    assert list(ptt["ptt_update_hi"].values) == list(range(1, 8))
    assert ptt.attrs["ptt_min_acceptance"] == pytest.approx(ptt["ptt_acceptance"].min())


@pytest.mark.workflow
def test_statistics_stage_with_ptt_in_snakemake(tiny_base_run, tmp_path):
    """statistics.sampler: ptt reruns only the statistics stage and its figures (a params
    change), reads the selected size's model.nc, stores the swap acceptance of every ladder
    pair and draws them in the equilibration figure."""
    import json
    import shutil

    import yaml
    from conftest import snakemake

    from spikerbm import io

    wf = tmp_path / "wf"
    shutil.copytree(tiny_base_run, wf, symlinks=True)  # keeps mtimes: only params changed
    cfg_path = wf / "config" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["statistics"].update(sampler="ptt", ptt_models=3)
    cfg_path.write_text(yaml.safe_dump(cfg))
    plan = snakemake(wf, "results/base/figures/fig3_equilibration.png", "-n", "--quiet", "rules")
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "train" not in plan.stdout and "statistics" in plan.stdout, plan.stdout
    proc = snakemake(wf, "--cores", "1", "results/base/figures/fig3_equilibration.png")
    assert proc.returncode == 0, proc.stderr[-4000:]
    stats = io.read_netcdf(wf / "results/base/statistics.nc")
    sel = io.read_attrs(wf / "results/base/selected.nc")
    assert stats.attrs["sampler"] == "ptt" and stats.attrs["ptt_n_models"] == 3
    acc = stats["ptt_acceptance"].values
    assert acc.shape == (2,) and np.all((acc >= 0) & (acc <= 1))
    assert stats["ptt_update_hi"].values[-1] == sel["checkpoint"]
    assert json.loads(stats.attrs["config"])["statistics"]["sampler"] == "ptt"
    log = (wf / "results/logs/statistics/base.log").read_text()
    assert "PTT swap acceptance" in log
    assert (wf / "results/base/figures/fig3_equilibration.png").stat().st_size > 10_000
