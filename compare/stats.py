"""Statistics for the parity verdict: the difference of means with its confidence interval, and
equivalence by two one-sided tests (TOST) against a margin. Paired (per-seed differences: both
frameworks see the same batches for a seed, and with init=shared the same start) where the runs pair
up, Welch's unpaired test otherwise. scipy does the distributions; tests/test_stats.py checks every
number here against scipy.stats.ttest_ind / ttest_rel."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

EQUIVALENT, DIFFERENT, UNDECIDED = "equivalent", "different", "no evidence either way"
# The study's vocabulary for a paired effect: the only verdict words the reports and docs/ print.
# "raises"/"lowers" only when the 95% interval excludes 0; "equivalent" only by TOST; else NO_EVIDENCE.
RAISES, LOWERS, NO_EVIDENCE = "raises", "lowers", UNDECIDED
CAUSE, SUSPECTED = "cause", "suspected cause"
MAX_SEEDS = 1000  # beyond this, "more seeds" is not a useful answer


def describe(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {
        "n": int(len(v)),
        "mean": float(v.mean()) if len(v) else math.nan,
        "std": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
        "values": [float(x) for x in v],
    }


def welch(a, b, confidence: float = 0.95) -> dict:
    """Difference of means a - b, its standard error, Welch-Satterthwaite df, CI and two-sided p."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff, se = float(a.mean() - b.mean()), float(math.sqrt(va + vb))
    if se == 0:
        return {"diff": diff, "se": 0.0, "df": math.inf, "ci": (diff, diff), "p": 1.0 if diff == 0 else 0.0}
    df = float((va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)))
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
    return {
        "diff": diff,
        "se": se,
        "df": df,
        "ci": (diff - half, diff + half),
        "p": float(2 * stats.t.sf(abs(diff) / se, df)),
    }


def tost(a, b, margin: float, paired: bool = False) -> dict:
    """Two one-sided (Welch or paired) t tests of |mean(a) - mean(b)| < margin; p is the larger."""
    w = paired_t(a, b) if paired else welch(a, b)
    if w["se"] == 0:
        p = 0.0 if abs(w["diff"]) < margin else 1.0
        return {"p_lower": p, "p_upper": p, "p": p}
    p_lower = float(stats.t.sf((w["diff"] + margin) / w["se"], w["df"]))  # H0: diff <= -margin
    p_upper = float(stats.t.cdf((w["diff"] - margin) / w["se"], w["df"]))  # H0: diff >= +margin
    return {"p_lower": p_lower, "p_upper": p_upper, "p": max(p_lower, p_upper)}


def _seeds_to_exclude_zero(mean: float, sd: float, alpha: float) -> int | None:
    """Paired seeds for a two-sided (1 - alpha) t interval to exclude 0, if mean and sd held."""
    if mean == 0:
        return None
    return next(
        (n for n in range(2, MAX_SEEDS + 1) if stats.t.ppf(1 - alpha / 2, n - 1) * sd / math.sqrt(n) < abs(mean)), None
    )


def _seeds_to_show_equivalence(
    mean: float, sd: float, margin: float, alpha: float, max_n: int = MAX_SEEDS
) -> int | None:
    """Paired seeds for TOST to pass at +-margin, if mean and sd held; None if |mean| >= margin."""
    if abs(mean) >= margin:
        return None
    return next(
        (n for n in range(2, max_n + 1) if stats.t.ppf(1 - alpha, n - 1) * sd / math.sqrt(n) < margin - abs(mean)), None
    )


def seeds_needed(a, b, margin: float, alpha: float = 0.05, max_n: int = 10000, paired: bool = False) -> int | None:
    """Seeds per side for TOST to pass if the observed difference and spread held; None if the
    observed difference is itself at or beyond the margin (more seeds cannot show equivalence)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = abs(a.mean() - b.mean())
    if diff >= margin:
        return None
    if paired:
        return _seeds_to_show_equivalence(diff, float(np.std(a - b, ddof=1)), margin, alpha, max_n)
    s2 = (a.var(ddof=1) + b.var(ddof=1)) / 2
    for n in range(2, max_n + 1):
        if stats.t.ppf(1 - alpha, 2 * n - 2) * math.sqrt(2 * s2 / n) < margin - diff:
            return n
    return None


def effect(diffs, margin: float, alpha: float = 0.05) -> dict:
    """The verdict on a paired effect from its per-seed differences (None: a seed without the pair).
    word: RAISES / LOWERS when the 95% t interval excludes 0 (within_margin says whether TOST also puts
    it inside +-margin), EQUIVALENT when TOST passes, else NO_EVIDENCE with seeds_to_decide: the fewest
    paired seeds that would resolve it (exclude 0, or show +-margin) at the observed mean and SD."""
    d = np.asarray([x for x in diffs if x is not None], float)
    n = len(d)
    out = {
        "n": n,
        "values": [float(x) for x in d],
        "margin": margin,
        "mean": float(d.mean()) if n else math.nan,
        "sd": math.nan,
        "lo": math.nan,
        "hi": math.nan,
        "tost_p": math.nan,
        "within_margin": False,
        "seeds_to_decide": None,
    }
    if n < 2:
        return {**out, "word": NO_EVIDENCE}
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(1 - alpha / 2, n - 1) * sd / math.sqrt(n))
    t = tost(d, np.zeros(n), margin, paired=True)
    out.update(sd=sd, lo=out["mean"] - half, hi=out["mean"] + half, tost_p=t["p"], within_margin=t["p"] < alpha)
    if out["lo"] > 0 or out["hi"] < 0:
        return {**out, "word": RAISES if out["mean"] > 0 else LOWERS}
    if out["within_margin"]:
        return {**out, "word": EQUIVALENT}
    options = [
        k
        for k in (
            _seeds_to_exclude_zero(out["mean"], sd, alpha),
            _seeds_to_show_equivalence(out["mean"], sd, margin, alpha),
        )
        if k
    ]
    return {**out, "word": NO_EVIDENCE, "seeds_to_decide": min(options) if options else None}


def cause(native: dict, matched: dict) -> dict:
    """Is the difference that a matched run removes the cause of a native effect? Only when the
    native effect is established (raises/lowers) and the matched run's interval excludes the native
    estimate: otherwise the mechanism stays a suspected cause. native, matched: effect() results."""
    established = native["word"] in (RAISES, LOWERS)
    excluded = matched["n"] >= 2 and not matched["lo"] <= native["mean"] <= matched["hi"]
    if established and excluded:
        return {"word": CAUSE, "why": "matching it moves the effect outside its native value"}
    why = (
        "the native effect itself is not established"
        if not established
        else "the matched interval still contains the native effect"
    )
    return {"word": SUSPECTED, "why": why}


def says(
    e: dict, unit: float = 100.0, suffix: str = " pp", digits: int = 2, directions: tuple[str, str] = (RAISES, LOWERS)
) -> str:
    """An effect() in words: "raises: +0.42 pp [+0.21, +0.64], 6 seeds" (directions renames the two
    signs, e.g. ("higher", "lower") for a framework gap, ("more", "fewer") for epochs)."""
    if e["n"] < 2:
        shown = f" ({e['mean'] * unit:+.{digits}f}{suffix})" if e["n"] else ""
        return f"{NO_EVIDENCE}: {e['n']} seed{'' if e['n'] == 1 else 's'}{shown}, at least 2 are needed"
    f = lambda x: f"{x * unit:+.{digits}f}"
    num = f"{f(e['mean'])}{suffix} [{f(e['lo'])}, {f(e['hi'])}], {e['n']} seeds"
    m = f"±{e['margin'] * unit:.{digits}g}{suffix}"
    if e["word"] in (RAISES, LOWERS):
        word = directions[0] if e["word"] == RAISES else directions[1]
        return f"{word}: {num}" + (f" (less than {m}: equivalent by TOST)" if e["within_margin"] else "")
    if e["word"] == EQUIVALENT:
        return f"{EQUIVALENT} within {m}: {num}"
    more = (
        f"~{e['seeds_to_decide']} paired seeds would decide at the observed SD"
        if e["seeds_to_decide"]
        else f"more than {MAX_SEEDS} paired seeds would be needed at the observed SD"
    )
    return f"{NO_EVIDENCE} at {e['n']} seeds: {num}; {more}"


def verdict(a, b, margin: float, alpha: float = 0.05, paired: bool = False) -> dict:
    """Different (the 95% CI excludes 0; within_margin: TOST passes too), equivalent (TOST passes), or
    no evidence either way (the same rule as effect()).
    paired=True (a[i], b[i] from the same seed) uses the per-seed differences; Welch is kept alongside."""
    paired = paired and len(a) == len(b)
    if len(a) < 2 or len(b) < 2:
        return {
            "outcome": UNDECIDED,
            "reason": "at least 2 seeds per side are needed for a spread",
            "welch": None,
            "paired": None,
            "interval": None,
            "test": None,
            "tost": None,
            "seeds_needed": None,
            "margin": margin,
        }
    w = welch(a, b, 1 - alpha)
    pt = paired_t(a, b, 1 - alpha) if paired else None
    main, t = (pt or w), tost(a, b, margin, paired)
    if main["p"] < alpha:  # the interval excludes 0 (within_margin keeps TOST's answer beside it)
        outcome = DIFFERENT
    elif t["p"] < alpha:
        outcome = EQUIVALENT
    else:
        outcome = UNDECIDED
    return {
        "outcome": outcome,
        "welch": w,
        "paired": pt,
        "interval": main,
        "test": "paired t" if paired else "Welch",
        "tost": t,
        "margin": margin,
        "alpha": alpha,
        "within_margin": t["p"] < alpha,
        "seeds_needed": seeds_needed(a, b, margin, alpha, paired=paired) if outcome == UNDECIDED else None,
    }


def sentence(v: dict, a_name: str, b_name: str, unit: float = 100.0, what: str = "final test accuracy") -> str:
    """The verdict in plain words (accuracies shown in percentage points)."""
    m = v["margin"] * unit
    if v["welch"] is None:
        return f"No evidence either way on {what}: {v['reason']}."
    d, (lo, hi) = v["interval"]["diff"] * unit, (x * unit for x in v["interval"]["ci"])
    gap = f"{a_name} - {b_name} = {d:+.2f} pp (95% CI {lo:+.2f} to {hi:+.2f}, {v['test']})"
    if v["outcome"] == EQUIVALENT:
        return f"Equivalent within ±{m:.2f} pp on {what}: {gap}; TOST p = {v['tost']['p']:.3g}."
    if v["outcome"] == DIFFERENT:
        size = (
            f"less than ±{m:.2f} pp (equivalent by TOST, p = {v['tost']['p']:.3g})"
            if v.get("within_margin")
            else f"not within ±{m:.2f} pp"
        )
        return f"Different on {what}: {gap}, p = {v['interval']['p']:.3g}; {size}."
    more = (
        f"about {v['seeds_needed']} seeds per framework would be needed at the observed spread"
        if v["seeds_needed"]
        else "the observed gap is at or beyond the margin, so more seeds alone would not show equivalence"
    )
    return (
        f"No evidence either way on {what}: {gap} is neither clearly within ±{m:.2f} pp nor clearly non-zero; {more}."
    )
