"""The parity statistics checked against scipy on fixed inputs."""

import numpy as np
import pytest
from scipy import stats

from compare import stats as S

A = [0.8862, 0.8841, 0.8879, 0.8855]
B = [0.8848, 0.8870, 0.8839, 0.8861]


def test_welch_matches_scipy():
    w = S.welch(A, B)
    r = stats.ttest_ind(A, B, equal_var=False)
    ci = r.confidence_interval(0.95)
    assert w["p"] == pytest.approx(r.pvalue, rel=1e-10)
    assert w["ci"][0] == pytest.approx(ci.low, rel=1e-10) and w["ci"][1] == pytest.approx(ci.high, rel=1e-10)
    assert w["df"] == pytest.approx(r.df, rel=1e-10)


def test_tost_matches_two_one_sided_scipy_tests():
    m = 0.01
    t = S.tost(A, B, m)
    lower = stats.ttest_ind(np.array(A) + m, B, equal_var=False, alternative="greater").pvalue
    upper = stats.ttest_ind(np.array(A) - m, B, equal_var=False, alternative="less").pvalue
    assert t["p_lower"] == pytest.approx(lower, rel=1e-10) and t["p_upper"] == pytest.approx(upper, rel=1e-10)
    assert S.verdict(A, B, m)["outcome"] == S.EQUIVALENT


def test_different():
    a, b = [0.88, 0.881, 0.879], [0.85, 0.851, 0.849]
    v = S.verdict(a, b, 0.01)
    assert v["outcome"] == S.DIFFERENT and stats.ttest_ind(a, b, equal_var=False).pvalue < 0.05
    assert "Different on final test accuracy: A - B = +3.00 pp" in S.sentence(v, "A", "B")


def test_not_enough_evidence_says_how_many_seeds():
    a, b = [0.88, 0.87, 0.89], [0.875, 0.885, 0.865]  # gap 0.33 pp, spread 1 pp: undecided at 3 seeds
    v = S.verdict(a, b, 0.01)
    assert v["outcome"] == S.UNDECIDED
    n = v["seeds_needed"]
    assert n > 3

    # the claim holds: with n seeds, the same means and spread pass TOST; with n - 1 they do not
    def tost_p(k):
        rng = np.random.default_rng(0)
        z = rng.standard_normal(k)
        z = (z - z.mean()) / z.std(ddof=1)
        return S.tost(np.mean(a) + np.std(a, ddof=1) * z, np.mean(b) + np.std(b, ddof=1) * z, 0.01)["p"]

    assert tost_p(n) < 0.05 <= tost_p(n - 1)
    assert f"about {n} seeds per framework" in S.sentence(v, "A", "B")


def test_one_seed_is_not_evidence():
    v = S.verdict([0.88], [0.88], 0.01)
    assert v["outcome"] == S.UNDECIDED and "at least 2 seeds" in S.sentence(v, "A", "B")


def test_gap_beyond_margin_cannot_become_equivalent():
    v = S.verdict([0.88, 0.90, 0.86], [0.865, 0.885, 0.845], 0.01)
    assert v["outcome"] == S.UNDECIDED and v["seeds_needed"] is None


def test_paired_matches_scipy_ttest_rel():
    p = S.paired_t(A, B)
    r = stats.ttest_rel(A, B)
    ci = r.confidence_interval(0.95)
    assert p["p"] == pytest.approx(r.pvalue, rel=1e-10) and p["df"] == r.df
    assert p["ci"][0] == pytest.approx(ci.low, rel=1e-10) and p["ci"][1] == pytest.approx(ci.high, rel=1e-10)


def test_paired_tost_matches_two_one_sided_ttest_rel():
    m = 0.002
    t = S.tost(A, B, m, paired=True)
    lower = stats.ttest_rel(np.array(A) + m, B, alternative="greater").pvalue
    upper = stats.ttest_rel(np.array(A) - m, B, alternative="less").pvalue
    assert t["p_lower"] == pytest.approx(lower, rel=1e-10) and t["p_upper"] == pytest.approx(upper, rel=1e-10)


def test_pairing_tightens_the_verdict_when_seeds_move_together():
    # a seed effect shared by both sides (same batches, same start) plus a small steady gap
    seed_effect = np.array([0.010, -0.008, 0.004, -0.006])
    a, b = 0.885 + seed_effect + 0.001, 0.885 + seed_effect
    welch, paired = S.verdict(a, b, 0.003), S.verdict(a, b, 0.003, paired=True)
    # paired, the steady 0.1 pp gap is both non-zero and inside the margin: the CI decides the word
    assert welch["outcome"] == S.UNDECIDED and paired["outcome"] == S.DIFFERENT and paired["within_margin"]
    assert paired["test"] == "paired t" and "paired t" in S.sentence(paired, "A", "B")
    half_w = welch["interval"]["ci"][1] - welch["interval"]["diff"]
    half_p = paired["interval"]["ci"][1] - paired["interval"]["diff"]
    assert half_p < half_w / 10


def test_paired_seeds_needed_holds():
    a, b = [0.886, 0.880, 0.891], [0.883, 0.879, 0.8925]  # differences +0.3, +0.1, -0.15 pp
    v = S.verdict(a, b, 0.004, paired=True)
    assert v["outcome"] == S.UNDECIDED
    n = v["seeds_needed"]
    d = np.asarray(a) - np.asarray(b)

    def tost_p(k):  # k pairs with the same mean difference and spread
        z = np.random.default_rng(0).standard_normal(k)
        z = (z - z.mean()) / z.std(ddof=1)
        return S.tost(d.mean() + d.std(ddof=1) * z, np.zeros(k), 0.004, paired=True)["p"]

    assert n > 3 and tost_p(n) < 0.05 <= tost_p(n - 1)


# The study's vocabulary: effect() on per-seed paired differences


def test_effect_words_follow_the_interval_and_tost():
    up = S.effect([0.004, 0.005, 0.0045, 0.0042], margin=0.01)
    assert up["word"] == S.RAISES and up["lo"] > 0 and up["within_margin"]
    r = stats.ttest_1samp(up["values"], 0).confidence_interval(0.95)
    assert up["lo"] == pytest.approx(r.low, rel=1e-10) and up["hi"] == pytest.approx(r.high, rel=1e-10)
    assert S.effect([-0.02, -0.021, -0.019], 0.01)["word"] == S.LOWERS
    flat = S.effect([0.001, -0.001, 0.0005, -0.0004, 0.0002, -0.0003], 0.01)
    assert flat["word"] == S.EQUIVALENT and flat["lo"] < 0 < flat["hi"]
    assert S.says(flat).startswith("equivalent within ±1 pp")


def test_effect_without_evidence_says_which_seeds_decide():
    e = S.effect([0.0061, -0.0031, 0.0153], margin=0.01)  # PORTING.md's batch-norm effect at 3 seeds
    assert e["word"] == S.NO_EVIDENCE and e["lo"] < 0 < e["hi"]
    n = e["seeds_to_decide"]
    assert n > 3

    def decided(k):  # k paired seeds with the observed mean and SD
        z = np.random.default_rng(1).standard_normal(k)
        z = (z - z.mean()) / z.std(ddof=1)
        return S.effect(e["mean"] + e["sd"] * z, 0.01)["word"] != S.NO_EVIDENCE

    assert decided(n) and not decided(n - 1)
    assert f"~{n} paired seeds would decide" in S.says(e)
    assert S.effect([0.01], 0.01)["word"] == S.NO_EVIDENCE and "at least 2" in S.says(S.effect([0.01], 0.01))


def test_cause_needs_an_established_effect_and_a_discriminating_match():
    native = S.effect([-0.0097, -0.0082, -0.0059], 0.01)  # CLAIMS.md: vflip's effect, Keras minus PyTorch
    wide = S.effect([0.012, -0.010, 0.002], 0.01)  # matched, 4.5 pp wide: contains the native value
    assert native["word"] == S.LOWERS and S.cause(native, wide)["word"] == S.SUSPECTED
    tight = S.effect([0.0004, -0.0003, 0.0001], 0.01)
    assert S.cause(native, tight)["word"] == S.CAUSE
    assert S.cause(S.effect([0.01, -0.01, 0.002], 0.01), tight)["word"] == S.SUSPECTED
