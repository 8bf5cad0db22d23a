"""Statistics for the parity verdict: the difference of means with its confidence interval, and
equivalence by two one-sided tests (TOST) against a margin. Paired (per-seed differences: both
frameworks see the same batches for a seed, and with init=shared the same start) where the runs pair
up, Welch's unpaired test otherwise. scipy does the distributions; tests/test_stats.py checks every
number here against scipy.stats.ttest_ind / ttest_rel."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

EQUIVALENT, DIFFERENT, UNDECIDED = "equivalent", "different", "not enough evidence"


def describe(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {"n": int(len(v)), "mean": float(v.mean()) if len(v) else math.nan,
            "std": float(v.std(ddof=1)) if len(v) > 1 else math.nan, "values": [float(x) for x in v]}


def welch(a, b, confidence: float = 0.95) -> dict:
    """Difference of means a - b, its standard error, Welch-Satterthwaite df, CI and two-sided p."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff, se = float(a.mean() - b.mean()), float(math.sqrt(va + vb))
    if se == 0:
        return {"diff": diff, "se": 0.0, "df": math.inf, "ci": (diff, diff), "p": 1.0 if diff == 0 else 0.0}
    df = float((va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)))
    half = stats.t.ppf(0.5 + confidence / 2, df) * se
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    return {"diff": diff, "se": se, "df": df, "ci": (diff - half, diff + half), "p": p}


def paired_t(a, b, confidence: float = 0.95) -> dict:
    """Mean of the per-seed differences a_i - b_i, its standard error, df = n - 1, CI and two-sided p."""
    d = np.asarray(a, float) - np.asarray(b, float)
    diff, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))
    if se == 0:
        return {"diff": diff, "se": 0.0, "df": float(len(d) - 1), "ci": (diff, diff), "p": 1.0 if diff == 0 else 0.0}
    df = float(len(d) - 1)
    half = stats.t.ppf(0.5 + confidence / 2, df) * se
    return {"diff": diff, "se": se, "df": df, "ci": (diff - half, diff + half), "p": float(2 * stats.t.sf(abs(diff) / se, df))}


def tost(a, b, margin: float, paired: bool = False) -> dict:
    """Two one-sided (Welch or paired) t tests of |mean(a) - mean(b)| < margin; p is the larger."""
    w = paired_t(a, b) if paired else welch(a, b)
    if w["se"] == 0:
        p = 0.0 if abs(w["diff"]) < margin else 1.0
        return {"p_lower": p, "p_upper": p, "p": p}
    p_lower = float(stats.t.sf((w["diff"] + margin) / w["se"], w["df"]))   # H0: diff <= -margin
    p_upper = float(stats.t.cdf((w["diff"] - margin) / w["se"], w["df"]))  # H0: diff >= +margin
    return {"p_lower": p_lower, "p_upper": p_upper, "p": max(p_lower, p_upper)}


def seeds_needed(a, b, margin: float, alpha: float = 0.05, max_n: int = 10000, paired: bool = False) -> int | None:
    """Seeds per side for TOST to pass if the observed difference and spread held; None if the
    observed difference is itself at or beyond the margin (more seeds cannot show equivalence)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = abs(a.mean() - b.mean())
    if diff >= margin:
        return None
    if paired:
        sd = float(np.std(a - b, ddof=1))
        for n in range(2, max_n + 1):
            if stats.t.ppf(1 - alpha, n - 1) * sd / math.sqrt(n) < margin - diff:
                return n
        return None
    s2 = (a.var(ddof=1) + b.var(ddof=1)) / 2
    for n in range(2, max_n + 1):
        if stats.t.ppf(1 - alpha, 2 * n - 2) * math.sqrt(2 * s2 / n) < margin - diff:
            return n
    return None


def verdict(a, b, margin: float, alpha: float = 0.05, paired: bool = False) -> dict:
    """Equivalent (TOST passes), different (95% CI excludes 0, TOST fails), or not enough evidence.
    paired=True (a[i], b[i] from the same seed) uses the per-seed differences; Welch is kept alongside."""
    paired = paired and len(a) == len(b)
    if len(a) < 2 or len(b) < 2:
        return {"outcome": UNDECIDED, "reason": "at least 2 seeds per side are needed for a spread",
                "welch": None, "paired": None, "interval": None, "test": None, "tost": None,
                "seeds_needed": None, "margin": margin}
    w = welch(a, b, 1 - alpha)
    pt = paired_t(a, b, 1 - alpha) if paired else None
    main, t = (pt or w), tost(a, b, margin, paired)
    if t["p"] < alpha:
        outcome = EQUIVALENT
    elif main["p"] < alpha:
        outcome = DIFFERENT
    else:
        outcome = UNDECIDED
    return {"outcome": outcome, "welch": w, "paired": pt, "interval": main, "test": "paired t" if paired else "Welch",
            "tost": t, "margin": margin, "alpha": alpha,
            "seeds_needed": seeds_needed(a, b, margin, alpha, paired=paired) if outcome == UNDECIDED else None}


def sentence(v: dict, a_name: str, b_name: str, unit: float = 100.0, what: str = "final test accuracy") -> str:
    """The verdict in plain words (accuracies shown in percentage points)."""
    m = v["margin"] * unit
    if v["welch"] is None:
        return f"Not enough evidence on {what}: {v['reason']}."
    d, (lo, hi) = v["interval"]["diff"] * unit, (x * unit for x in v["interval"]["ci"])
    gap = f"{a_name} - {b_name} = {d:+.2f} pp (95% CI {lo:+.2f} to {hi:+.2f}, {v['test']})"
    if v["outcome"] == EQUIVALENT:
        return f"Equivalent within ±{m:.2f} pp on {what}: {gap}; TOST p = {v['tost']['p']:.3g}."
    if v["outcome"] == DIFFERENT:
        return f"Different on {what}: {gap}, p = {v['interval']['p']:.3g}; not within ±{m:.2f} pp."
    more = (f"about {v['seeds_needed']} seeds per framework would be needed at the observed spread"
            if v["seeds_needed"] else "the observed gap is at or beyond the margin, so more seeds alone would not show equivalence")
    return f"Not enough evidence on {what}: {gap} is neither clearly within ±{m:.2f} pp nor clearly non-zero; {more}."
