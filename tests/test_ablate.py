"""Ablation arms, paired statistics and the ablation files."""
import json

import numpy as np
import pytest
import torch
from scipy.stats import ttest_rel

from infoenh.data.synthetic import make_synthetic_splits
from infoenh.train import ablate
from infoenh.train.ablate import ARMS, arm_config, format_markdown, run_ablation
from infoenh.train.config import TrainConfig
from infoenh.train.stats import (bootstrap_ci, bootstrap_coverage, holm, min_bootstrap_seeds, paired_comparison,
                                 sign_flip_test)

TINY = dict(seed=0, sizes=(40, 16, 16), text_dim=16, text_len=12, audio_len=16, vision_len=16,
            audio_neg_inf_frac=0.0)


# the testbed plants -inf in audio on purpose (MMSA's COVAREP does); the loader's warning is expected
pytestmark = [pytest.mark.filterwarnings("ignore::infoenh.data.DataCleaningWarning"),
              # ot_iters=10 keeps these tests fast; Sinkhorn then often stops at the cap
              pytest.mark.filterwarnings("ignore::infoenh.train.runner.ConvergenceWarning")]

@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every test here runs on one thread (see conftest.one_thread)."""


def test_paired_comparison_matches_scipy_and_bootstrap_brackets_the_mean():
    ref = [0.80, 0.78, 0.82, 0.79, 0.81]
    arm = [0.76, 0.77, 0.78, 0.74, 0.80]
    c = paired_comparison(ref, arm, n_boot=4000, seed=1)
    t = ttest_rel(arm, ref)
    d = np.subtract(arm, ref)
    assert c["n"] == 5 and c["mean_diff"] == pytest.approx(d.mean())
    assert c["t"] == pytest.approx(t.statistic) and c["p"] == pytest.approx(t.pvalue)
    assert c["std_diff"] == pytest.approx(d.std(ddof=1))
    ti = t.confidence_interval(0.95)
    assert c["t_low"] == pytest.approx(ti.low) and c["t_high"] == pytest.approx(ti.high)
    assert c["ci_low"] is None and "needs at least 10" in c["ci_note"]   # 5 seeds: no bootstrap interval
    rng = np.random.default_rng(0)                                        # 12 seeds: a bootstrap interval
    ref12, arm12 = rng.normal(0.8, 0.02, 12), rng.normal(0.78, 0.02, 12)
    c12 = paired_comparison(ref12, arm12, n_boot=4000, seed=1)
    d12 = arm12 - ref12
    assert d12.min() <= c12["ci_low"] <= d12.mean() <= c12["ci_high"] <= d12.max() and c12["ci_note"] is None
    assert paired_comparison(ref12, arm12, n_boot=4000, seed=1) == c12  # seeded bootstrap


def test_three_seeds_give_no_bootstrap_interval_but_a_t_interval_and_an_exact_sign_flip_test():
    """The issue's case: -0.0309, -0.0449, -0.0041 gave a '95% CI' [-0.0449, -0.0041], the range."""
    d = np.array([-0.0309, -0.0449, -0.0041])
    assert bootstrap_ci(d, n_boot=10000, seed=0) == pytest.approx((d.min(), d.max()))   # why: it is the range
    c = paired_comparison(np.zeros(3), d)
    assert c["ci_low"] is None and c["ci_high"] is None and "from 3 seeds" in c["ci_note"]
    assert c["t_low"] < 0 < c["t_high"]                               # the t interval contains 0, as p = 0.156
    assert c["p"] == pytest.approx(0.156, abs=1e-3)
    assert c["p_signflip"] == c["p_signflip_min"] == 0.25 and c["signflip_exact"] is True
    # the minimum: the first n whose bootstrap covers at least 90% (normal differences)
    n = min_bootstrap_seeds()
    assert n == 10 and bootstrap_coverage(n) >= 0.90 > bootstrap_coverage(n - 1)
    assert bootstrap_coverage(3) == pytest.approx(0.749, abs=1e-3)
    assert paired_comparison(np.zeros(n), np.linspace(-0.05, 0.01, n))["ci_low"] is not None


def test_sign_flip_test_matches_scipy_permutation_test():
    from scipy.stats import permutation_test

    d = np.array([0.03, -0.01, 0.02, 0.05, 0.01, -0.02])
    ours = sign_flip_test(d)
    ref = permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                           alternative="two-sided")
    assert ours["exact"] is True and ours["p"] == pytest.approx(ref.pvalue)
    assert sign_flip_test(np.full(5, 0.01))["p"] == pytest.approx(2 / 32)    # all of one sign: 2 / 2^n
    assert sign_flip_test([0.1])["p"] is None
    many = sign_flip_test(np.r_[d, d, d, d], n_samples=20000)               # 24 pairs: sampled, not enumerated
    assert many["exact"] is False and 0 < many["p"] < 1


def test_holm_adjusts_a_family_and_keeps_missing_p_values_out_of_it():
    assert holm([0.01, 0.04, None, 0.03, 0.5]) == pytest.approx([0.04, 0.09, None, 0.09, 0.5])
    assert holm([0.3, 0.9]) == [0.6, 0.9] and holm([0.6, 0.7]) == [1.0, 1.0]   # monotone, capped at 1
    assert holm([]) == [] and holm([None]) == [None]


def test_paired_comparison_degenerate_cases():
    one = paired_comparison([1.0], [0.5])
    assert one["p"] is None and one["std_diff"] is None and one["mean_diff"] == -0.5
    assert one["ci_low"] is None and one["ci_high"] is None          # one pair: no interval, not [d, d]
    const = paired_comparison([1.0, 2.0, 3.0], [1.5, 2.5, 3.5])     # every difference equal
    assert const["p"] is None and const["t_low"] is None and const["ci_low"] is None
    assert const["p_signflip"] == 0.25                                # defined: 3 seeds of one sign
    with pytest.raises(ValueError, match="equal 1-D shapes"):
        paired_comparison([1.0, 2.0], [1.0])
    lo, hi = bootstrap_ci([], n_boot=10)
    assert np.isnan(lo) and np.isnan(hi)


def test_differences_equal_up_to_rounding_have_no_t_test():
    """Metrics are rounded to 4 decimals: 2 clips of 64 (-0.03125) read -0.0312 or -0.0313."""
    c = paired_comparison([0.7813, 0.7656], [0.75, 0.7344])
    assert c["t"] is None and c["p"] is None                          # was t = -625, p = 0.001
    assert c["mean_diff"] == pytest.approx(-0.03125)
    assert c["t_low"] is None and c["ci_low"] is None                 # no interval either
    noise = paired_comparison([0.2, 0.3, 0.1], [0.3, 0.4, 0.2])       # 0.1 each, up to float noise
    assert noise["t"] is None and noise["p"] is None                  # was p = 3.5e-32
    assert noise["t_low"] is None and noise["p_signflip"] == 0.25
    # a spread beyond the rounding is a spread: tested as before
    real = paired_comparison([0.70, 0.70, 0.70], [0.7301, 0.7299, 0.7303])
    t = ttest_rel([0.7301, 0.7299, 0.7303], [0.70, 0.70, 0.70])
    assert real["t"] == pytest.approx(t.statistic) and real["p"] == pytest.approx(t.pvalue)
    assert paired_comparison([0.5, 0.5], [0.5, 0.5002], resolution=1e-3)["p"] is None
    # a NaN metric: no statistics, no exception
    nan = paired_comparison([0.5, float("nan")], [0.6, 0.7])
    assert nan["t"] is None and nan["mean_diff"] is None


def _doc(seeds, comparisons):
    summ = {k: {"mean": 0.5, "std": 0.01} for k in ("MAE", "Corr")}
    arms = {"baseline": {"label": "host alone (w/o InfoEnh)", "summary": summ, "runs": []},
            "plumbing": {"label": ARMS["plumbing"]["label"], "summary": summ, "runs": []}}
    return {"config": {"model": "lf", "dataset": "SYNTHETIC", "seeds": seeds,
                       "arms": ["baseline", "plumbing"] if comparisons else ["baseline"]},
            "arms": arms, "comparisons": comparisons}


def test_markdown_prints_n_a_for_a_missing_interval_and_no_empty_comparison_table():
    c = paired_comparison([0.80], [0.75])
    doc = _doc([1111], {"plumbing vs baseline": {"arm": "plumbing", "reference": "baseline", "isolates": "plumbing",
                                                 "MAE": c, "Corr": c}})
    md = format_markdown(doc)
    assert "| plumbing vs baseline | -0.0500 [n/a] p=n/a (sign-flip n/a) |" in md
    assert "One seed: no paired statistics" in md
    assert "| plumbing: gate open, no InfoNCE, no FIA |" in md and "plumbing: plumbing" not in md
    from infoenh.analysis import ablation_differences

    (row,) = ablation_differences(doc, "MAE")
    assert row["ci_low"] is None and row["ci_high"] is None and row["better"] is None and row["p"] is None
    alone = format_markdown(_doc([1111, 1112], {}))
    assert "No comparison: add an arm" in alone
    assert "Paired differences" not in alone and "What each comparison isolates" not in alone


def test_arms_map_to_the_paper_switches():
    base = TrainConfig(model="selfmm")
    assert arm_config(base, "baseline").infoenh == "none"
    assert arm_config(base, "fib").infoenh == "fib_only"      # w/o FIA
    assert arm_config(base, "fia").infoenh == "fia_only"      # w/o FIB
    assert arm_config(base, "full").infoenh == "full"
    c = arm_config(base, "no_text_full")
    assert c.modalities == ("audio", "vision") and c.infoenh == "full"
    assert arm_config(base, "no_vision").modalities == ("text", "audio")
    assert arm_config(base, "plumbing").infoenh == "plumbing"
    assert arm_config(base, "no_audio_plumbing").modalities == ("text", "vision")
    assert arm_config(base, "fia_uniform").infoenh == "fia_uniform"
    assert arm_config(base, "full_uniform").infoenh == "full_uniform"
    assert len(ARMS) == 7 + 3 * 3          # 7 full-modality arms (the uniform-plan controls too), 3 per dropped one
    with pytest.raises(ValueError, match="unknown arm"):
        arm_config(base, "no_smell")


def test_run_ablation_writes_json_and_markdown(tmp_path, monkeypatch, capsys):
    ds = make_synthetic_splits(**TINY)
    base = TrainConfig(model="lf", epochs=1, quiet=True, infoenh_kwargs={"d": 8, "k": 4, "ot_iters": 10})
    doc = run_ablation(ds, base, ["fia", "no_vision_full"], [1111, 1112], tmp_path, n_boot=500)
    # every reference arm is added: the host alone and the plumbing control, for each modality set
    assert doc["config"]["arms"] == ["baseline", "plumbing", "fia", "no_vision", "no_vision_plumbing",
                                     "no_vision_full"]
    assert doc["config"]["requested_arms"] == ["fia", "no_vision_full"]
    err = capsys.readouterr().err
    assert ("also running the reference arms: baseline, plumbing, no_vision, no_vision_plumbing (every InfoEnh arm "
            "is compared with the host alone and with its plumbing control") in err
    assert set(doc["comparisons"]) == {
        "plumbing vs baseline", "fia vs baseline", "fia vs plumbing", "no_vision vs baseline",
        "no_vision_plumbing vs no_vision", "no_vision_plumbing vs baseline", "no_vision_full vs no_vision",
        "no_vision_full vs no_vision_plumbing", "no_vision_full vs baseline"}
    assert "alignment" in doc["comparisons"]["fia vs plumbing"]["isolates"]
    assert doc["comparisons"]["fia vs plumbing"]["reference"] == "plumbing"
    on_disk = json.loads((tmp_path / "ablation.json").read_text())
    assert on_disk["config"]["arms"] == doc["config"]["arms"]
    fia = [r["test"]["MAE"] for r in doc["arms"]["fia"]["runs"]]
    bl = [r["test"]["MAE"] for r in doc["arms"]["baseline"]["runs"]]
    assert doc["comparisons"]["fia vs baseline"]["MAE"]["mean_diff"] == pytest.approx(np.mean(np.subtract(fia, bl)))
    assert doc["arms"]["no_vision_full"]["modalities"] == ["text", "audio"]
    md = (tmp_path / "ablation.md").read_text()
    assert md == format_markdown(doc)
    for label in ("baseline: host alone (w/o InfoEnh)", "+FIA (w/o FIB)", "w/o vision +InfoEnh", "SYNTHETIC",
                  "fia vs plumbing", "What each comparison isolates", "| plumbing: gate open, no InfoNCE, no FIA |",
                  "without the process's one-time start-up"):
        assert label in md
    assert "One seed" not in md and "No comparison" not in md
    # Holm-adjusted p beside the raw p, in every comparison and metric, in the JSON and the table
    cells = [c[k] for c in doc["comparisons"].values() for k in ablate.TABLE_METRICS if k in c]
    assert cells and all("p_holm" in c and "p_signflip_holm" in c for c in cells)
    assert all(c["p_holm"] >= c["p"] for c in cells if c["p"] is not None)
    assert doc["config"]["holm_family"] == sum(c["p"] is not None for c in cells)
    rows = [ln for ln in md.splitlines() if " vs " in ln and ln.startswith("| ")]
    assert len(rows) == len(doc["comparisons"]) and all(ln.count("sign-flip") == 7 for ln in rows)
    assert all(ln.count("(Holm ") == 7 for ln in rows)
    assert "t interval (from 2 seeds: a percentile bootstrap interval needs at least 10" in md
    # what ran: the options beyond the host's defaults, the seeds, the runs at the epoch cap
    assert doc["config"]["options_changed"] == {"epochs": 1, "infoenh_kwargs.d": 8, "infoenh_kwargs.k": 4,
                                                "infoenh_kwargs.ot_iters": 10}
    assert doc["config"]["n_seeds"] == 2 and doc["epoch_cap"]["cap"] == 1
    assert doc["epoch_cap"]["at_cap"] == doc["epoch_cap"]["runs"] == 12      # 1 epoch: every run at the cap
    assert "Options beyond the host's defaults: epochs: 1, infoenh_kwargs.d: 8" in md
    assert "Seeds: 2 (1111, 1112). epoch cap 1: convergence not assessed" in md    # one epoch: nothing to compare
    assert md.count("Seeds:") == 1                                        # one paragraph on the seeds
    # each arm's parameter count, in the JSON and the table: FIA's wider head has more
    assert doc["arms"]["fia"]["n_params"] > doc["arms"]["plumbing"]["n_params"] > 0
    assert "| arm | parameters |" in md and f"| fia | {doc['arms']['fia']['n_params']:,} |" in md
    assert doc["started_at"] <= doc["finished_at"] and doc["environment"]["versions"]["torch"] == torch.__version__
    # a second call reuses the finished runs: nothing is retrained
    monkeypatch.setattr("infoenh.train.runner.fit", lambda *a, **k: pytest.fail("retrained a finished run"))
    again = run_ablation(ds, base, ["fia", "no_vision_full"], [1111, 1112], tmp_path, n_boot=500)
    assert again["comparisons"] == doc["comparisons"]


def test_one_seed_warns_and_baseline_alone_compares_nothing(tmp_path, capsys):
    ds = make_synthetic_splits(**TINY)
    base = TrainConfig(model="lf", epochs=1, quiet=True, infoenh_kwargs={"d": 8, "k": 4})
    with pytest.warns(UserWarning, match="a single seed .1111. gives no paired statistics"):
        doc = run_ablation(ds, base, ["plumbing"], [1111], tmp_path / "one", n_boot=50)
    assert "also running the reference arm: baseline (" in capsys.readouterr().err
    c = doc["comparisons"]["plumbing vs baseline"]["MAE"]
    assert c["n"] == 1 and c["ci_low"] is None and c["ci_high"] is None and c["p"] is None
    md = (tmp_path / "one" / "ablation.md").read_text()
    assert "One seed: no paired statistics" in md and "[n/a] p=n/a" in md
    # the host alone: nothing added, nothing compared, no empty tables
    doc = run_ablation(ds, base, ["baseline"], [1111, 1112], tmp_path / "alone", n_boot=50)
    assert doc["comparisons"] == {} and doc["config"]["requested_arms"] == ["baseline"]
    assert "also running" not in capsys.readouterr().err
    md = (tmp_path / "alone" / "ablation.md").read_text()
    assert "No comparison: add an arm" in md and "| comparison |" not in md and "isolates" not in md


def test_unknown_arm_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown arm"):
        run_ablation({}, TrainConfig(), ["full", "w/o smell"], [1111], tmp_path)
    assert ablate.TABLE_METRICS[0] == "MAE"


def test_the_reproducibility_page_states_the_numbers_stats_computes():
    """book/reproducibility.md is prose (no glue): its numbers are checked against the code here."""
    from pathlib import Path

    from infoenh.train.stats import sign_flip_test

    text = " ".join((Path(__file__).parents[1] / "book" / "reproducibility.md").read_text().split())
    cover3, cover5 = round(100 * bootstrap_coverage(3)), round(100 * bootstrap_coverage(5))
    assert f"about {cover3}% of the time with three seeds and {cover5}% with five" in text
    assert min_bootstrap_seeds() == 10 and "only from ten seeds on" in text
    p3, p5 = sign_flip_test([1.0] * 3)["p"], sign_flip_test([1.0] * 5)["p"]
    assert f"({p3:.2f} with three seeds, {p5:.4f} with five)" in text


def test_an_arm_that_solved_no_ot_problem_shows_a_dash_for_ot_converged():
    """Before: fia_uniform (uniform plan, 0 Sinkhorn iterations) showed 'OT converged 1.000'."""
    def arm(diag):
        return {"runs": [{"diagnostics": diag, "wall_seconds": 1.0}], "n_params": 10}

    doc = {"config": {"arms": ["baseline", "fia_uniform", "fia"]},
           "arms": {"baseline": arm({}),
                    "fia_uniform": arm({"ot_iters_mean": 0.0, "ot_converged_frac": 1.0}),
                    "fia": arm({"ot_iters_mean": 12.5, "ot_converged_frac": 0.75})}}
    rows = {line.split("|")[1].strip(): line.split("|")[4].strip()
            for line in ablate._diagnostics_table(doc) if line.startswith("| ") and "---" not in line}
    assert rows["baseline"] == "–" and rows["fia_uniform"] == "–" and rows["fia"] == "0.750"
