"""CONTRIBUTING.md true to the code: its make targets are the Makefile's, each target's
row names the scripts that target runs, and every path it names exists; the README's
times are those of a recorded fresh run."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATH = re.compile(r"\b((?:tools|dev|book|bench|tests)/[\w./-]+\.(?:py|sh|txt|yml))")


def makefile_rules(text: str) -> dict[str, str]:
    "target -> its recipe (the tab-indented lines under it), for every rule."
    rules, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^([a-z][a-z-]*):", line)
        if m:
            current = m.group(1)
            rules[current] = ""
        elif line.startswith("\t") and current:
            rules[current] += line + "\n"
        elif not line.startswith("\t"):
            current = None
    return rules


def contributing_targets(text: str) -> dict[str, str]:
    "make target -> its row in CONTRIBUTING's table of make targets."
    return {
        m.group(1): m.group(0)
        for m in re.finditer(r"^\| `make ([a-z][a-z-]*)` \|.*$", text, re.M)
    }


def test_contributing_lists_every_make_target_and_only_those():
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY: (.*)$", makefile, re.M).group(1).split()
    rows = contributing_targets((ROOT / "CONTRIBUTING.md").read_text())
    assert sorted(rows) == sorted(phony), "CONTRIBUTING's make table vs .PHONY"
    rules = makefile_rules(makefile)
    assert set(phony) <= set(rules), set(phony) - set(rules)


def test_each_target_row_names_what_the_target_runs():
    rules = makefile_rules((ROOT / "Makefile").read_text())
    for target, row in contributing_targets(
        (ROOT / "CONTRIBUTING.md").read_text()
    ).items():
        for path in PATH.findall(row):
            assert path in rules[target], f"make {target}: runs no {path}"


def test_every_make_target_and_path_the_docs_name_exists():
    rules = makefile_rules((ROOT / "Makefile").read_text())
    for doc in ("CONTRIBUTING.md", "README.md", "ARCHITECTURE.md"):
        text = (ROOT / doc).read_text()
        for target in re.findall(r"`make ([a-z][a-z-]*)", text):
            assert target in rules, f"{doc} names `make {target}`, not in the Makefile"
        for path in PATH.findall(text):
            assert (ROOT / path).exists(), f"{doc} names {path}, which does not exist"


def test_the_checks_catch_a_drift(tmp_path):
    "A target missing from the table, or a row naming a script its recipe does not run."
    rules = makefile_rules(
        "demo: install\n\t$(PY) tools/demo.py\n\nclean:\n\trm -rf x\n"
    )
    assert rules == {"demo": "\t$(PY) tools/demo.py\n", "clean": "\trm -rf x\n"}
    rows = contributing_targets("| `make demo` | runs `tools/demo.sh` |\n")
    assert sorted(rows) != sorted(rules)
    assert [p for p in PATH.findall(rows["demo"]) if p not in rules["demo"]] == [
        "tools/demo.sh"
    ]


def readme_times(text: str) -> tuple[float, float] | None:
    "The minutes the README gives for a fresh `make demo` and a fresh `make test`."
    m = re.search(
        r"a fresh `make demo` took ([\d.]+) min.*?a fresh `make test` ([\d.]+) min",
        text,
        re.S,
    )
    return (float(m.group(1)), float(m.group(2))) if m else None


def test_readme_times_are_a_recorded_fresh_run():
    "Within 20% of bench/fresh-times.json (dev/time_fresh.sh), its command and date."
    rec = json.loads((ROOT / "bench" / "fresh-times.json").read_text())
    text = (ROOT / "README.md").read_text()
    said = readme_times(text)
    assert said, "the README gives no time for a fresh make demo and make test"
    for minutes, key in zip(said, ("make demo", "make test")):
        got = rec["fresh"][key] / 60
        assert abs(minutes - got) <= 0.2 * got, (
            f"{key}: README {minutes}, run {got:.1f}"
        )
    assert rec["command"] in text and rec["date"][:10] in text
    assert readme_times(
        "a fresh `make demo` took 1 min, a fresh `make test` 9 min"
    ) == (
        1.0,
        9.0,
    )
