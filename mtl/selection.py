"""Which variant of a comparison its validation splits choose, in words.

Two rules may choose a recipe, both on validation faces, never on a test set: the mean of both tasks'
validation accuracy, and the worst validation group (class x the other task's class x source). A
variant is ranked only against those scored on the same validation faces: the validation split is
drawn from the training sources with the run's seed, so a variant with another gender source was
scored on other (and not equally hard) faces. Means over different numbers of seeds do not compare
either, so each set of validation faces ranks the variants with the most finished seeds.

A lead is a finding only when it exceeds the spread across seeds: per seed, the leader's value less
the runner-up's, and its mean larger than its standard deviation.
"""

import statistics
from dataclasses import dataclass

RULES = {"mean": "validation mean (both tasks)", "worst_group": "validation worst group"}


@dataclass(frozen=True)
class Scored:
    """One finished run's validation scores (fractions), and what its validation faces were drawn from."""
    variant: str
    seed: str
    splits: str
    mean: float | None
    worst_group: float | None


def validation_mean(scores: dict) -> float | None:
    """The mean of both tasks' validation accuracy in a run's headline metrics (or a comparison's row);
    None where one is missing (a refit, a run of `mtl evaluate` alone)."""
    accuracies = [scores.get(f"validation_{task}_accuracy") for task in ("gender", "emotion")]
    return None if None in accuracies else statistics.mean(accuracies)


def scored_run(variant: str, seed: str, data: dict | None, scores: dict) -> Scored:
    """One run as the rules rank it: `data` is its config's `data` fields (None: not recorded),
    `scores` its headline metrics or its comparison row."""
    splits = validation_splits(data) if data else "not recorded"
    return Scored(variant, seed, splits, validation_mean(scores), scores.get("validation_worst_group_accuracy"))


def validation_splits(data: dict) -> str:
    """What a run's validation faces are drawn from, in words, from its config's `data` fields."""
    def named(entry) -> str:
        return entry.split(":", 1)[-1] if isinstance(entry, str) else ", ".join(f"{k} {v}" for k, v in sorted(entry.items()))

    return (f"gender from {' + '.join(map(named, data['gender_train']))}, emotion from "
            f"{' + '.join(map(named, data['emotion_train']))}, {data['validation_fraction']:g} of each held out")


def points(values: list[float], signed: bool = False) -> str:
    """Fractions as percent: one value, or mean ± standard deviation."""
    values = [100 * value for value in values]
    sign = "+" if signed else ""
    if len(values) == 1:
        return f"{values[0]:{sign}.1f}"
    return f"{statistics.mean(values):{sign}.1f} ± {statistics.stdev(values):.1f}"


def differences(runs: dict[str, dict[str, Scored]], rule: str, first: str, second: str) -> list[float]:
    """`first`'s value less `second`'s under `rule`, per seed both have it."""
    return [getattr(run, rule) - getattr(runs[second][seed], rule) for seed, run in runs[first].items()
            if seed in runs[second] and getattr(run, rule) is not None and getattr(runs[second][seed], rule) is not None]


def verdict(lead: list[float]) -> str:
    """Whether a per-seed difference is a finding: its mean larger than its spread, over two seeds or more."""
    if len(lead) < 2:
        return "fewer than two seeds in common: not a finding"
    if abs(statistics.mean(lead)) > statistics.stdev(lead):
        return "a finding: the difference exceeds its spread across seeds"
    return "within the spread across seeds: not a finding"


def per_seed(*leads: list[float]) -> str:
    """" per seed" where a difference rests on more than one seed; nothing for one seed alone."""
    return " per seed" if any(len(lead) > 1 for lead in leads) else ""


def rule_values(seeds: dict[str, Scored], rule: str) -> list[float]:
    """One variant's values under `rule`, over the seeds that have one."""
    return [value for run in seeds.values() if (value := getattr(run, rule)) is not None]


def rule_line(runs: dict[str, dict[str, Scored]], rule: str) -> tuple[str, str] | None:
    """(leader, line): the variant with the highest mean under `rule`, its lead over the runner-up per
    seed, and whether that lead is a finding; None when no variant has a value for the rule."""
    values = {name: rule_values(seeds, rule) for name, seeds in runs.items()}
    means = {name: statistics.mean(found) for name, found in values.items() if found}
    if not means:
        return None
    first, *others = sorted(means, key=means.get, reverse=True)
    line = f"{RULES[rule]}: `{first}` ({points(values[first])})"
    if not others:
        return first, line + ", the only variant that has it"
    lead = differences(runs, rule, first, others[0])
    return first, f"{line}, ahead of `{others[0]}` by {points(lead, signed=True)} points{per_seed(lead)}; {verdict(lead)}"


def head_to_head(runs: dict[str, dict[str, Scored]], first: str, second: str) -> str:
    """One line: `first` less `second` under every rule, per seed they share, each with its verdict."""
    leads = {rule: lead for rule in RULES if (lead := differences(runs, rule, first, second))}
    parts = [f"{RULES[rule]} {points(lead, signed=True)} points ({verdict(lead)})" for rule, lead in leads.items()]
    return f"Head to head, `{first}` less `{second}`{per_seed(*leads.values())}: " + "; ".join(parts) + "."


def undominated(runs: dict[str, dict[str, Scored]]) -> list[str]:
    """The variants that no other variant beats on the mean of both rules (a missing value loses)."""
    means = {name: [statistics.mean(values) if (values := rule_values(seeds, rule)) else float("-inf") for rule in RULES]
             for name, seeds in runs.items()}
    return [name for name, own in means.items()
            if not any(all(o > v for o, v in zip(other, own)) for other_name, other in means.items() if other_name != name)]


def choice_section(scored: list[Scored]) -> str:
    """Markdown, from a blank line: per set of validation faces, the leader under each rule and whether
    both rules agree; empty when no run has validation scores (refits, runs of `mtl evaluate` alone)."""
    by_splits: dict[str, dict[str, dict[str, Scored]]] = {}
    for run in scored:
        if run.mean is not None or run.worst_group is not None:
            by_splits.setdefault(run.splits, {}).setdefault(run.variant, {})[run.seed] = run
    if not by_splits:
        return ""
    lines = [
        "",  # like every section of results.md after the table, it opens with a blank line
        "## Chosen on the validation splits",
        "",
        "What may choose a recipe: the mean of both tasks' validation accuracy and the worst validation group, never a test set.",
        "Variants are ranked only against those scored on the same validation faces (drawn from the same training sources).",
    ]
    for splits, candidates in by_splits.items():
        most = max(len(seeds) for seeds in candidates.values())
        complete = {name: seeds for name, seeds in candidates.items() if len(seeds) == most}
        left_out = ", ".join(f"`{name}`" for name in candidates if name not in complete)
        leaders = {rule: found for rule in RULES if (found := rule_line(complete, rule))}
        chosen = {name for name, _ in leaders.values()}
        lines += [
            "",
            f"Validation faces: {splits}. Among {len(complete)} variant{'s' if len(complete) > 1 else ''} with "
            f"{most} finished seed{'s' if most > 1 else ''}" + (f" (left out, fewer seeds: {left_out})" if left_out else "") + ":",
            "",
            *[f"- {line}" for _, line in leaders.values()],
        ]
        if len(leaders) < len(RULES):
            continue  # runs written before worst groups were measured: one rule has nothing to rank
        if len(chosen) == 1:
            lines.append(f"- Both choose `{chosen.pop()}`.")
        else:
            mean_leader, worst_group_leader = (leaders[rule][0] for rule in RULES)
            lines += ["- The two disagree: no variant leads on both. Behind no other variant on both: "
                      + ", ".join(f"`{name}`" for name in undominated(complete)) + ".",
                      f"- {head_to_head(complete, worst_group_leader, mean_leader)}"]
    return "\n".join(lines) + "\n"
