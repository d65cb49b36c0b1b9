"""CONTRIBUTING.md true to the code: its make targets are the Makefile's, each target's
row names the scripts that target runs, and every path it names exists."""

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
