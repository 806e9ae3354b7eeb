"""Each setting is declared once: the README's table and every STAGEFLOW_* name the code reads
come from (or are checked against) the declarations in stageflow.config."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields

import pytest

from stageflow.config import SETTINGS_DOC, Settings, declared, settings_markdown, variable
from tests.conftest import ROOT

BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"

# STAGEFLOW_* names the code reads that are not server settings, and why.
NOT_SETTINGS = {
    "STAGEFLOW_URL": "the CLI's server (a client of the API)",
    "STAGEFLOW_TOKEN": "the CLI's API token",
    "STAGEFLOW_CONFIG": "the CLI's contexts file",
    "STAGEFLOW_REVISION": "the revision a CI job reports checks for",
    # examples in the messages about a `notify:` target's `url_env` (stageflow.yaml names the
    # variables that hold each target's URL and secret)
    "STAGEFLOW_NOTIFY_TEAM": "an example variable name in a stageflow.yaml error message",
    "STAGEFLOW_NOTIFY_TEAM_SLACK": "an example variable name in a stageflow.yaml error message",
    "STAGEFLOW_PROD_ARGOCD_WEBHOOK": "an example variable name in a stageflow.yaml error message",
}


def readme_table() -> str:
    readme = (ROOT / "README.md").read_text()
    assert readme.count(BEGIN) == 1 and readme.count(END) == 1, "the README lost its markers"
    return readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def test_the_readme_table_is_the_generated_one():
    assert readme_table() == settings_markdown(), (
        "the README's settings table differs from the declarations: paste the output of "
        "`python -m stageflow.config` between its settings:begin and settings:end marks"
    )


def test_python_dash_m_prints_the_table():
    done = subprocess.run(
        [sys.executable, "-m", "stageflow.config"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == settings_markdown()


def test_every_field_is_a_declared_setting_with_its_own_variable():
    assert [f.name for f in fields(Settings)] == [attr for attr, _ in declared()]
    assert [name for _, name, _, _ in SETTINGS_DOC] == [variable(a) for a, _ in declared()]
    assert all(doc.strip() for *_, doc in SETTINGS_DOC)


def test_a_secret_setting_stays_out_of_repr():
    settings = Settings(git_token="glpat-do-not-print", admin_token="admin-secret-0123456789")
    assert "glpat-do-not-print" not in repr(settings)


def names_read_by_the_code() -> set[str]:
    found: set[str] = set()
    for source in (ROOT / "service").rglob("*.py"):
        # a word boundary before: HTTP_X_STAGEFLOW_APP is a request header, not a variable
        found |= set(re.findall(r"\bSTAGEFLOW_[A-Z0-9_]*[A-Z0-9]\b", source.read_text()))
    return found


def test_every_stageflow_variable_in_the_code_is_declared_or_listed():
    declared_names = {name for _, name, _, _ in SETTINGS_DOC}
    unknown = names_read_by_the_code() - declared_names - set(NOT_SETTINGS)
    assert not unknown, (
        f"{sorted(unknown)} appear in service/ but are not declared: declare each with "
        "setting() in stageflow.config, or list it in NOT_SETTINGS with the reason"
    )


@pytest.mark.parametrize("name", sorted(NOT_SETTINGS))
def test_what_is_listed_as_not_a_setting_is_not_one(name: str):
    assert name not in {n for _, n, _, _ in SETTINGS_DOC}
    assert name in names_read_by_the_code(), f"{name} is no longer read: drop it from the list"
