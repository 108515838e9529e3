"""The LLM gateway's guardrails: how well they judge a labelled corpus, and what they cost per prompt.

    python -m bench.guardrails [--iterations 2000] [--rounds 3]

Quality, on the corpus in ``test/data/guardrails/`` (JSONL, one text a line; see its README):

- ``prompt-injection``: precision and recall over attacks (``label: attack``) and benign prompts,
  overall and per split: ``dev`` is what the rules were tuned on, ``holdout`` was written after the
  rules were frozen and is the fairer figure; then, per kind, how many texts were judged right
  (attacks blocked, benign prompts passed). Each text is judged as its ``origin`` (user or tool).
- ``pii-redaction``: per placeholder type, recall (the value is gone and the type's placeholder is
  there) and precision (no redaction at all in the type's hard negatives), with and without the rows
  marked ``hard`` (formats the rules do not claim, kept to show what is missed).

Both corpora were written by the same hand as the rules, so the figures are an upper bound on what
fresh traffic would see; the holdout split is the least flattering one.

Cost: the median time of one call over 2,048-character prompts of six shapes (English prose,
Python code, a support email carrying six pieces of personal data, non-ASCII text with emoji and
CJK, a worst case of nothing but personal data (about 40 pieces: redaction's cost grows with what it
finds, a few microseconds each), JSON with a base64 blob), for each check alone and for both through
``Guardrails.apply`` on an ``openai-chat`` body (what the gateway pays). Each figure is the best of
``--rounds`` medians of ``--iterations`` calls (the least disturbed round: the machine may be shared;
the load average at start is printed). Goal: both checks together under 500 us per 2 KB prompt
(the pii-heavy worst case aside). One process, no network.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentkube.dataplane.llm.guardrails import PLACEHOLDER_OF, Guardrails, PiiRedaction, PromptInjection

CORPUS = Path(__file__).resolve().parent.parent / "test" / "data" / "guardrails"
SIZE = 2048


def _load(name: str) -> list[dict[str, Any]]:
    with open(CORPUS / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "  -  "


def injection_quality() -> None:
    rows = _load("injection.jsonl")
    check = PromptInjection()
    verdicts = [(row, check.assess(row["text"], row["origin"]).blocked) for row in rows]
    attacks = sum(row["label"] == "attack" for row in rows)
    print(f"prompt-injection: {len(rows)} texts, {attacks} attacks, {len(rows) - attacks} benign")
    print(f"  {'split':<28}{'precision':>10}{'recall':>8}   tp  fp  fn  tn")
    for split in ("all", "dev", "holdout"):
        chosen = [(r, b) for r, b in verdicts if split == "all" or r["split"] == split]
        tp = sum(1 for r, b in chosen if b and r["label"] == "attack")
        fp = sum(1 for r, b in chosen if b and r["label"] == "benign")
        fn = sum(1 for r, b in chosen if not b and r["label"] == "attack")
        tn = sum(1 for r, b in chosen if not b and r["label"] == "benign")
        label = {"all": "all", "dev": "dev (rules tuned on it)", "holdout": "holdout (written after)"}[split]
        print(
            f"  {label:<28}{_ratio(tp, tp + fp):>10}{_ratio(tp, tp + fn):>8}  {tp:>3} {fp:>3} {fn:>3} {tn:>3}"
        )
    by_kind: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row, blocked in verdicts:
        tally = by_kind[(row["label"], row["kind"])]
        tally[0] += blocked == (row["label"] == "attack")
        tally[1] += 1
    for label, verb in (("attack", "blocked"), ("benign", "passed")):
        kinds = sorted(k for lab, k in by_kind if lab == label)
        print(f"  {label} kinds ({verb} / total):")
        for kind in kinds:
            right, total = by_kind[(label, kind)]
            print(f"    {kind:<26}{right:>4} / {total:<4}{right / total:>7.1%}")


def pii_quality() -> None:
    rows = _load("pii.jsonl")
    check = PiiRedaction()
    hard = sum(1 for row in rows if row.get("hard"))
    print(f"pii-redaction: {len(rows)} texts ({hard} marked hard: known misses)")
    print(f"  {'type':<14}{'precision':>10}{'recall':>8}{'recall w/o hard':>17}   pos  neg")
    tallies: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        out, found = check.redact(row["text"])
        t = tallies[row["kind"]]
        if row["label"] == "pii":
            ok = row["value"] not in out and PLACEHOLDER_OF[row["kind"]] in out
            t["pos"] += 1
            t["tp"] += ok
            if not row.get("hard"):
                t["easy"] += 1
                t["easy_tp"] += ok
        else:
            t["neg"] += 1
            t["fp"] += bool(found)
    total: dict[str, int] = defaultdict(int)
    for kind, t in tallies.items():
        for key, value in t.items():
            total[key] += value
        print(
            f"  {kind:<14}{_ratio(t['tp'], t['tp'] + t['fp']):>10}{_ratio(t['tp'], t['pos']):>8}"
            f"{_ratio(t['easy_tp'], t['easy']):>17}  {t['pos']:>4} {t['neg']:>4}"
        )
    precision, recall = _ratio(total["tp"], total["tp"] + total["fp"]), _ratio(total["tp"], total["pos"])
    print(
        f"  {'all':<14}{precision:>10}{recall:>8}"
        f"{_ratio(total['easy_tp'], total['easy']):>17}  {total['pos']:>4} {total['neg']:>4}"
    )


def _fill(text: str) -> str:
    return (text * (SIZE // len(text) + 1))[:SIZE]


PROMPTS = {
    "prose": _fill(
        "Hi, I'm working on the quarterly report for our team and need help restructuring the analysis "
        "section. We collected survey data from 1,240 customers between March and May, and the results "
        "show that satisfaction went up by 12% after the redesign. Could you suggest a clearer way to "
        "present the numbers, maybe with a table and two short paragraphs? Our manager asked us to keep "
        "the tone neutral and avoid jargon. "
    ),
    "code": _fill(
        "def load(path: str, *, ignore_errors: bool = False) -> dict[str, Any]:\n"
        '    """Read the config at path; previous overrides are dropped when reset is set."""\n'
        "    with open(path, encoding='utf-8') as f:\n"
        "        data = yaml.safe_load(f) or {}\n"
        "    for key, value in data.items():\n"
        "        if key.startswith('_') and not ignore_errors:\n"
        "            raise ValueError(f'{path}: {key}: private keys are not allowed')\n"
        "    return {k: v for k, v in data.items() if v is not None}  # 3 passes, O(n)\n"
    ),
    "pii-email": (
        "Hello support team,\n\nI am writing about my order from last week. The package arrived on "
        "time, but the invoice shows a second charge that I did not expect, and I would like to "
        "understand what it is for before I contact my bank. I have been a customer for several years and "
        "this has never happened before, so I assume it is a simple mistake in your billing system. My "
        "name is Ana Souza and you can reach me at ana.souza@example.com or on +55 11 91234-5678 during "
        "office hours. The card I used ends in the number 4111 1111 1111 1111, and if a refund is "
        "possible please send it to my account DE89 3704 0044 0532 0130 00 instead of the card, because "
        "the card has since been replaced. For your records my tax number (CPF) is 111.444.777-35. I also "
        "noticed that your website logged me out several times while I was checking the order status; the "
        "error page mentioned the address 203.0.113.42, in case that helps your technical team. Could you "
        "please look into both issues and let me know what the second charge was, whether it can be "
        "reversed, and how long a refund usually takes? I would also appreciate a corrected invoice for "
        "my accounting, since I need to file it with my expenses at the end of the month. If you need any "
        "other information from me, such as the order number or the date of purchase, just let me know "
        "and I will send it right away. Thank you very much for your help and have a nice day.\n\nBest "
        "regards,\nAna\n\nP.S. I tried calling the hotline yesterday but the waiting time was over "
        "forty minutes, which is why I am writing instead. The chat on the website was not available "
        "either, so email seemed the quickest way to reach you. Thanks again for taking the time to read "
        "this message and for any help you can give me with the charge and the corrected invoice. I look "
        "forward to hearing from you soon, ideally before the end of the week, as my bank statement "
        "closes on Friday and I would like to avoid disputing the charge through the bank. Kind regards "
        "once more, and thank you for your patience with this long message."
    )[:SIZE],
    "non-ascii": _fill(
        "Grüße aus München! 🌞 Könnten Sie mir helfen, diesen Absatz zu übersetzen? 我们下周在东京见面。"
        "Цены выросли на 5%. Ελπίζω να είστε καλά. Merci beaucoup pour votre réponse rapide — à bientôt! "  # noqa: RUF001
    ),
    "pii-heavy": _fill(
        "ana.souza@example.com, +55 11 91234-5678, card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 "
        "0130 00, CPF 111.444.777-35, from 203.0.113.42; "
    ),
    "base64-json": _fill(
        '{"name": "avatar.png", "size": 1834, "data": "iVBORw0KGgoAAAANSUhEUgAAAGQAAABkCAYAAABw4pVUAAAA'
        'BHNCSVQICAgIfAhkiAAAAAlwSFlzAAALEgAACxIB0t1+/AAAABx0RVh0U29mdHdhcmUAQWRvYmUgRmlyZXdvcmtzIENT"} '
    ),
}


def _median_us(call: Callable[[], object], iterations: int, rounds: int) -> float:
    for _ in range(min(200, iterations)):
        call()
    best = float("inf")
    for _ in range(rounds):
        samples = []
        for _ in range(iterations):
            started = time.perf_counter_ns()
            call()
            samples.append(time.perf_counter_ns() - started)
        best = min(best, statistics.median(samples) / 1000)
    return best


def cost(iterations: int, rounds: int) -> None:
    injection, pii = PromptInjection(), PiiRedaction()
    both = Guardrails(pii_redaction=True, input_filters=["prompt-injection"])

    def through_both(text: str) -> None:
        both.apply("openai-chat", {"messages": [{"role": "user", "content": text}]})

    subjects: dict[str, Callable[[str], object]] = {
        "prompt-injection": lambda text: injection.inspect(text, "user"),
        "pii-redaction": lambda text: pii.inspect(text, "user"),
        "both (Guardrails.apply)": through_both,
    }
    load = os.getloadavg()[0]
    print(
        f"cost per {SIZE}-character prompt, us (best of {rounds} medians of {iterations} calls; "
        f"load average {load:.2f} on {os.cpu_count()} cores at start)"
    )
    print(f"  {'':<26}" + "".join(f"{name:>13}" for name in PROMPTS))
    worst = 0.0
    for label, subject in subjects.items():
        figures = [
            _median_us(functools.partial(subject, text), iterations, rounds) for text in PROMPTS.values()
        ]
        if label.startswith("both"):
            worst = max(f for name, f in zip(PROMPTS, figures, strict=True) if name != "pii-heavy")
        print(f"  {label:<26}" + "".join(f"{f:>13.1f}" for f in figures))
    verdict = "met" if worst < 500 else "MISSED"
    goal = "both under 500 us per 2 KB prompt (all shapes but pii-heavy)"
    print(f"  goal: {goal}: worst {worst:.1f} us, {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    injection_quality()
    print()
    pii_quality()
    print()
    cost(args.iterations, args.rounds)


if __name__ == "__main__":
    main()
