"""Statistics for the parity verdict: Welch's difference of means with its confidence interval,
and equivalence by two one-sided tests (TOST) against a margin. scipy does the distributions;
tests/test_stats.py checks every number here against scipy.stats.ttest_ind."""
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


def tost(a, b, margin: float) -> dict:
    """Two one-sided Welch tests of |mean(a) - mean(b)| < margin; p is the larger of the two."""
    w = welch(a, b)
    if w["se"] == 0:
        p = 0.0 if abs(w["diff"]) < margin else 1.0
        return {"p_lower": p, "p_upper": p, "p": p}
    p_lower = float(stats.t.sf((w["diff"] + margin) / w["se"], w["df"]))   # H0: diff <= -margin
    p_upper = float(stats.t.cdf((w["diff"] - margin) / w["se"], w["df"]))  # H0: diff >= +margin
    return {"p_lower": p_lower, "p_upper": p_upper, "p": max(p_lower, p_upper)}


def seeds_needed(a, b, margin: float, alpha: float = 0.05, max_n: int = 10000) -> int | None:
    """Seeds per side for TOST to pass if the observed difference and spread held; None if the
    observed difference is itself at or beyond the margin (more seeds cannot show equivalence)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = abs(a.mean() - b.mean())
    if diff >= margin:
        return None
    s2 = (a.var(ddof=1) + b.var(ddof=1)) / 2
    for n in range(2, max_n + 1):
        if stats.t.ppf(1 - alpha, 2 * n - 2) * math.sqrt(2 * s2 / n) < margin - diff:
            return n
    return None


def verdict(a, b, margin: float, alpha: float = 0.05) -> dict:
    """Equivalent (TOST passes), different (95% CI excludes 0, TOST fails), or not enough evidence."""
    if len(a) < 2 or len(b) < 2:
        return {"outcome": UNDECIDED, "reason": "at least 2 seeds per side are needed for a spread",
                "welch": None, "tost": None, "seeds_needed": None, "margin": margin}
    w, t = welch(a, b, 1 - alpha), tost(a, b, margin)
    if t["p"] < alpha:
        outcome = EQUIVALENT
    elif w["p"] < alpha:
        outcome = DIFFERENT
    else:
        outcome = UNDECIDED
    return {"outcome": outcome, "welch": w, "tost": t, "margin": margin, "alpha": alpha,
            "seeds_needed": seeds_needed(a, b, margin, alpha) if outcome == UNDECIDED else None}


def sentence(v: dict, a_name: str, b_name: str, unit: float = 100.0, what: str = "final test accuracy") -> str:
    """The verdict in plain words (accuracies shown in percentage points)."""
    m = v["margin"] * unit
    if v["welch"] is None:
        return f"Not enough evidence on {what}: {v['reason']}."
    d, (lo, hi) = v["welch"]["diff"] * unit, (x * unit for x in v["welch"]["ci"])
    gap = f"{a_name} - {b_name} = {d:+.2f} pp (95% CI {lo:+.2f} to {hi:+.2f})"
    if v["outcome"] == EQUIVALENT:
        return f"Equivalent within ±{m:.2f} pp on {what}: {gap}; TOST p = {v['tost']['p']:.3g}."
    if v["outcome"] == DIFFERENT:
        return f"Different on {what}: {gap}, Welch p = {v['welch']['p']:.3g}; not within ±{m:.2f} pp."
    more = (f"about {v['seeds_needed']} seeds per framework would be needed at the observed spread"
            if v["seeds_needed"] else "the observed gap is at or beyond the margin, so more seeds alone would not show equivalence")
    return f"Not enough evidence on {what}: {gap} is neither clearly within ±{m:.2f} pp nor clearly non-zero; {more}."
