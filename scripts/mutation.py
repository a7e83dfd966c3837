#!/usr/bin/env python3
"""Mutation testing: does some test fail when a protocol rule is quietly broken?

    python scripts/mutation.py --list                       # every mutant, no test run
    python scripts/mutation.py --module audit/checks.py     # run one module's mutants
    python scripts/mutation.py --sample 30 --seed 1         # at most 30 mutants per module
    python scripts/mutation.py --report                     # score per module + survivors

A mutant is one small edit a careless change (or a malicious one) could make: a
boundary comparison moved by one (``<`` <-> ``<=``), ``==`` <-> ``!=``, ``and`` <->
``or``, ``+`` <-> ``-``, an integer constant off by one, ``True`` <-> ``False``, a
condition negated, a ``raise`` or ``continue`` dropped. In Solidity sources only the
comparisons and ``&&``/``||`` are mutated, and each mutant is recompiled.

Why not mutmut or cosmic-ray: both pick tests by running the whole suite first
(mutmut's stats pass) or run one fixed command for every mutant, and this suite takes
far too long on the project's 2-core machines for either. Here each module names its
own tests (``tests/<pkg>/test_<mod>.py`` by default, overrides in ``TESTS``), and a
mutant only runs those, stopping at the first failure.

Every mutant runs in a scratch copy of the repository (the working tree is never
edited), with bytecode caching off so a mutated file is always recompiled. A mutant is
*killed* when its tests fail, *survived* when they pass, *timeout* (counted as killed,
like mutmut) when they run past three times the module's unmutated time. Results
are appended to ``.mutation/results.jsonl`` keyed by the mutant and a hash of the
original source, so a run can be stopped and resumed, and a changed source is
mutated afresh.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import importlib
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / ".mutation" / "results.jsonl"
SCRATCH = ROOT / ".mutation" / "tree"

# The modules in scope (issue 14, item 18), relative to the repository root.
SCOPE_GLOBS = (
    "flare_chain/committee/*.py",
    "flare_chain/aggregation/*.py",
    "flare_chain/compression/*.py",
    "flare_chain/ipfs/*.py",
    "flare_chain/node/outbox.py",
    "flare_chain/node/daemon.py",
    "flare_chain/audit/checks.py",
    "contracts/FlareCoordinator.sol",
    "contracts/VrfSortitionCommittee.sol",
)

# The fallback proposer's per-attempt tests first and the long revert catalogue last: pytest stops at the first
# failure, so a mutant the quick files kill costs seconds, not the whole selection
_COORDINATOR_TESTS = tuple(
    f"tests/contracts/test_{name}.py"
    for name in ("fallback_proposer", "claim_seed", "quorum_boundaries", "round_schedule", "seat_claims",
                 "stake_lifecycle", "coordinator_lifecycle", "coordinator_reverts")
)

# Tests per module where ``tests/<pkg>/test_<mod>.py`` is not the (whole) answer.
TESTS: dict[str, tuple[str, ...]] = {
    "flare_chain/committee/secp256k1.py": ("tests/committee/test_vrf.py",),
    "flare_chain/aggregation/__init__.py": ("tests/aggregation/test_gate_pipeline.py",),
    "flare_chain/aggregation/base.py": (
        "tests/aggregation/test_fedavg.py",
        "tests/aggregation/test_gate_pipeline.py",
    ),
    "flare_chain/aggregation/anomaly.py": ("tests/aggregation/test_gate_pipeline.py", "tests/aggregation/test_defences.py"),
    # test_probe_loss gives the gate stand-in losses and never runs CandidateModel; test_candidate_model does
    "flare_chain/aggregation/candidate_model.py": ("tests/aggregation/test_candidate_model.py",),
    "flare_chain/aggregation/gates.py": (
        "tests/aggregation/test_gates.py",
        "tests/aggregation/test_gate_pipeline.py",
    ),
    # the probe-loss gate's outlier rule (harm against the round's honest spread) is tested in test_probe_skew
    "flare_chain/aggregation/probe_loss.py": (
        "tests/aggregation/test_probe_loss.py",
        "tests/aggregation/test_probe_skew.py",
    ),
    "flare_chain/aggregation/pipeline.py": ("tests/aggregation/test_pipeline.py", "tests/aggregation/test_gate_pipeline.py"),
    # test_aggregate's first three tests train six nodes in a fixture (minutes); its synthetic-round tests, the
    # member's review (test_verdict), the sample-count cap and the privacy gate cover the module in seconds
    "flare_chain/committee/aggregate.py": (
        "tests/committee/test_verdict.py",
        "tests/committee/test_aggregation_weight.py",
        "tests/committee/test_local_dp.py",
        "tests/committee/test_aggregate.py::test_the_probe_loss_gate_judges_every_update_when_the_chain_names_a_corpus",
        "tests/committee/test_aggregate.py::test_the_mi_filter_judges_every_update_on_the_public_probe_text",
        "tests/committee/test_aggregate.py::"
        "test_without_a_probe_corpus_the_mi_filter_judges_on_seed_windows_and_probe_loss_stays_off",
        "tests/committee/test_aggregate.py::test_too_few_updates_for_a_model_gate_never_fetch_its_corpus",
    ),
    # The blocked sort's bit-identity with a full sort (signed zeros included) is tested in test_order_stats
    "flare_chain/aggregation/median.py": ("tests/aggregation/test_median.py", "tests/aggregation/test_order_stats.py"),
    "flare_chain/aggregation/trimmed_mean.py": (
        "tests/aggregation/test_trimmed_mean.py",
        "tests/aggregation/test_order_stats.py",
    ),
    # robust.py (median/MAD z-scores) has its own tests/aggregation/test_robust.py, picked by default
    "flare_chain/compression/__init__.py": ("tests/compression",),
    "flare_chain/ipfs/__init__.py": ("tests/ipfs/test_store.py",),
    # The UnixFS type numbers are read by dag.py (a HAMT root named as a directory), tested in test_dag
    "flare_chain/ipfs/dagpb.py": ("tests/ipfs/test_dagpb.py", "tests/ipfs/test_dag.py"),
    "flare_chain/ipfs/blockfiles.py": ("tests/ipfs/test_store.py",),
    # dag.py walks what the store holds: ls, cat and pin go through it (test_store), test_dag has the edge cases
    "flare_chain/ipfs/dag.py": ("tests/ipfs/test_dag.py", "tests/ipfs/test_store.py"),
    "flare_chain/ipfs/fetch.py": ("tests/ipfs/test_store.py", "tests/ipfs/test_kubo_client.py"),
    "flare_chain/ipfs/importer.py": ("tests/ipfs/test_store.py", "tests/ipfs/test_kubo_vectors.py"),
    "flare_chain/ipfs/unixfs.py": ("tests/ipfs/test_dag.py", "tests/ipfs/test_kubo_vectors.py"),
    "flare_chain/ipfs/multipart.py": ("tests/ipfs/test_rpc_server.py",),
    # Not the two federation tests (a crash at every side-effect point, an IPFS outage: minutes each on 2 cores);
    # the idle-net tests drive every step, guard and resume path
    "flare_chain/node/daemon.py": (
        "-k", "not crash_at_every_side_effect and not ipfs_endpoint_down", "tests/node/test_daemon.py",
    ),
    # The doctored histories first (one check each, no federation to build); the fallback rules' own histories
    # (rank after a rejection, per-attempt quorum) and unbonding need a simulated federation, so they come after
    "flare_chain/audit/checks.py": (
        "tests/audit/test_chain_check_failures.py",
        "tests/audit/test_fallback_audit.py",
        "tests/audit/test_unbonding.py",
        "tests/audit/test_chain_checks.py",
    ),
    # The coordinator's behaviour tests; not the artifact tests (they compare artifacts with a fresh compile,
    # and each mutant is recompiled anyway), the VRF library's (its harness has no coordinator) nor the
    # stateful random walk (minutes per run on 2 cores; its rules are the ones the files below pin)
    "contracts/FlareCoordinator.sol": _COORDINATOR_TESTS,
    # The committee's draw, weights and leader scores: the seat and fallback tests reach them, not the quorum's
    "contracts/VrfSortitionCommittee.sol": tuple(
        f"tests/contracts/test_{name}.py"
        for name in ("fallback_proposer", "claim_seed", "seat_claims", "seat_weights", "round_schedule",
                     "stake_lifecycle", "coordinator_lifecycle", "coordinator_reverts")
    ),
}

# What the scratch copy needs: the package, its tests, the contracts and scripts.
COPIED = ("flare_chain", "tests", "contracts", "scripts", "pyproject.toml")
LINKED = ("node_modules",)

_BOUNDARY = {"<": "<=", "<=": "<", ">": ">=", ">=": ">"}
_EQUALITY = {"==": "!=", "!=": "=="}
_ARITH = {"+": "-", "-": "+"}
_BOOL_WORDS = {"and": "or", "or": "and"}
_CONSTANTS = {"True": "False", "False": "True"}
_BINARY_LEFT = {")", "]", "}"}


@dataclass(frozen=True)
class Mutant:
    """One edit of one file: ``source[start:end]`` becomes ``replacement``."""

    path: str
    line: int
    start: int
    end: int
    original: str
    replacement: str
    operator: str

    @property
    def key(self) -> str:
        return f"{self.path}:{self.line}:{self.start}:{self.operator}"

    def apply(self, source: str) -> str:
        return source[: self.start] + self.replacement + source[self.end :]

    def describe(self) -> str:
        return f"{self.path}:{self.line} {self.operator}: `{self.original}` -> `{_one_line(self.replacement)}`"


def _offsets(source: str) -> list[int]:
    """Character offset of the start of each line (1-based line numbers index it)."""
    starts = [0, 0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _skipped_lines(tree: ast.AST) -> set[int]:
    """Lines no mutant should touch: type-checking-only imports and log/print calls.

    Mutating a log message's arithmetic or an import guarded by ``TYPE_CHECKING``
    changes nothing a user relies on, so such mutants would only be noise.
    """
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            end = node.end_lineno or node.lineno
            skipped.update(range(node.lineno, end + 1))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = ast.unparse(node.func.value)
            if owner in {"log", "logger", "_log", "LOG"} or owner.endswith(".log"):
                skipped.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return skipped


def python_mutants(path: str, source: str) -> Iterator[Mutant]:
    """Every mutant of one Python source, in source order."""
    offsets = _offsets(source)
    tree = ast.parse(source)
    skipped = _skipped_lines(tree)
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    previous: tokenize.TokenInfo | None = None
    for tok in tokens:
        line, col = tok.start
        if tok.type in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
            continue
        if line in skipped:
            previous = tok
            continue
        start = offsets[line] + col
        end = start + len(tok.string)
        text = tok.string
        if tok.type == tokenize.OP:
            if text in _BOUNDARY:
                yield Mutant(path, line, start, end, text, _BOUNDARY[text], "boundary")
            elif text in _EQUALITY:
                yield Mutant(path, line, start, end, text, _EQUALITY[text], "equality")
            elif text in _ARITH and previous is not None and (
                previous.type in (tokenize.NUMBER, tokenize.STRING)
                or (previous.type == tokenize.NAME and previous.string not in _KEYWORDS)
                or previous.string in _BINARY_LEFT
            ):
                yield Mutant(path, line, start, end, text, _ARITH[text], "arithmetic")
        elif tok.type == tokenize.NAME:
            if text in _BOOL_WORDS:
                yield Mutant(path, line, start, end, text, _BOOL_WORDS[text], "boolean")
            elif text in _CONSTANTS:
                yield Mutant(path, line, start, end, text, _CONSTANTS[text], "constant")
        elif tok.type == tokenize.NUMBER and _is_int(text):
            yield Mutant(path, line, start, end, text, str(int(text.replace("_", ""), 0) + 1), "off-by-one")
        previous = tok
    for node in ast.walk(tree):
        test = None
        if isinstance(node, ast.If | ast.While | ast.IfExp | ast.Assert):
            test = node.test
        if test is not None and test.lineno not in skipped:
            s = offsets[test.lineno] + test.col_offset
            e = offsets[test.end_lineno or test.lineno] + (test.end_col_offset or 0)
            text = source[s:e]
            yield Mutant(path, test.lineno, s, e, _one_line(text), f"not ({text})", "negate")
        if isinstance(node, ast.Raise | ast.Continue) and node.lineno not in skipped:
            s = offsets[node.lineno] + node.col_offset
            e = offsets[node.end_lineno or node.lineno] + (node.end_col_offset or 0)
            kind = "drop-raise" if isinstance(node, ast.Raise) else "drop-continue"
            yield Mutant(path, node.lineno, s, e, _one_line(source[s:e]), "pass", kind)


_KEYWORDS = {"return", "if", "elif", "else", "and", "or", "not", "in", "is", "lambda", "yield", "assert", "while"}


def _is_int(text: str) -> bool:
    try:
        int(text.replace("_", ""), 0)
    except ValueError:
        return False
    return True


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= 70 else flat[:67] + "..."


_SOL_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/|\"(?:\\.|[^\"\\])*\"", re.S)
_SOL_OPERATOR = re.compile(r"<=|>=|==|!=|&&|\|\||(?<![<>=])<(?![<=])|(?<![<>=])>(?![>=])")
_SOL_SWAP = {**_BOUNDARY, **_EQUALITY, "&&": "||", "||": "&&"}


def solidity_mutants(path: str, source: str) -> Iterator[Mutant]:
    """Comparison and logical-operator mutants of one Solidity source.

    Comments and string literals are blanked first so operators in NatSpec are not
    mutated; ``=>`` (mappings), shifts and ``<``/``>`` of ``mapping(... => ...)``
    are excluded by the operator pattern's lookarounds.
    """
    blanked = _SOL_COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), source)
    for match in _SOL_OPERATOR.finditer(blanked):
        text = match.group(0)
        if text == ">" and blanked[match.start() - 1] == "=":
            continue
        line = blanked.count("\n", 0, match.start()) + 1
        line_text = blanked.splitlines()[line - 1].strip()
        if line_text.startswith(("pragma", "import", "event", "error")):
            continue
        operator = {"<": "boundary", "<=": "boundary", ">": "boundary", ">=": "boundary"}.get(
            text, "equality" if text in _EQUALITY else "boolean"
        )
        yield Mutant(path, line, match.start(), match.end(), text, _SOL_SWAP[text], operator)


def mutants_of(path: str) -> list[Mutant]:
    source = (ROOT / path).read_text()
    found = solidity_mutants(path, source) if path.endswith(".sol") else python_mutants(path, source)
    valid = []
    for mutant in found:
        if not path.endswith(".sol"):
            try:
                compile(mutant.apply(source), path, "exec")
            except SyntaxError:
                continue
        valid.append(mutant)
    return valid


def modules_in_scope() -> list[str]:
    paths: list[str] = []
    for pattern in SCOPE_GLOBS:
        for found in sorted(ROOT.glob(pattern)):
            rel = found.relative_to(ROOT).as_posix()
            if rel not in paths and found.stat().st_size > 0:
                paths.append(rel)
    return paths


def tests_for(path: str) -> tuple[str, ...]:
    if path in TESTS:
        return TESTS[path]
    parts = Path(path).parts
    guess = Path("tests", *parts[1:-1], f"test_{Path(path).stem}.py")
    if (ROOT / guess).exists():
        return (guess.as_posix(),)
    return (Path("tests", *parts[1:-1]).as_posix(),)


def source_hash(path: str) -> str:
    return hashlib.sha256((ROOT / path).read_bytes()).hexdigest()[:16]


def load_results(store: Path = RESULTS) -> dict[str, dict[str, object]]:
    results: dict[str, dict[str, object]] = {}
    if store.exists():
        for line in store.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                results[f"{row['key']}@{row['hash']}"] = row
    return results


def prepare_scratch(scratch: Path) -> Path:
    """A fresh copy of the repository to mutate; the working tree is never edited."""
    scratch = scratch.resolve()  # the tests run with it as their working directory and import path
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, scratch / name, ignore=ignore, symlinks=True)
        else:
            shutil.copy2(src, scratch / name)
    for name in LINKED:
        if (ROOT / name).exists():
            (scratch / name).symlink_to((ROOT / name).resolve())
    return scratch


# Third-party packages the tests import, loaded once in the parent so that each mutant's
# forked pytest skips their import (seconds of CPU per mutant on a loaded 2-core machine).
# Nothing of flare_chain is imported here: each child imports the mutated tree afresh.
_WARM = ("numpy", "torch", "safetensors", "pydantic", "eth_abi", "eth_utils", "eth_keys", "web3",
         "eth_tester", "transformers", "peft", "pytest", "_pytest.python")


_WRONG_TREE = 97  # the child's exit status when flare_chain is not imported from the scratch copy


def warm_imports() -> None:
    for name in _WARM:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    leaked = sorted(m for m in sys.modules if m == "flare_chain" or m.startswith("flare_chain."))
    if leaked:
        raise SystemExit(f"mutation: the parent imported {leaked[0]}; mutants would run unmutated code")


def run_tests(tree: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float, str]:
    """('passed' | 'failed' | 'timeout', seconds, note) of one pytest run in a forked child.

    The child gets its own process group, so a timeout also ends the servers and
    chains its tests started.
    """
    log = tree.with_name(tree.name + ".log")
    began = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: run pytest on the scratch tree, report through the exit status
        code = 3
        try:
            os.setpgid(0, 0)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.chdir(tree)
            os.environ["PYTHONPATH"] = str(tree)
            os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
            sys.dont_write_bytecode = True
            sys.path.insert(0, str(tree))
            import flare_chain  # must be the scratch copy, not an installed (editable) package

            if not Path(flare_chain.__file__).resolve().is_relative_to(tree.resolve()):
                code = _WRONG_TREE
                raise SystemExit(code)
            import pytest

            code = int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-m", "not slow", *tests]))
        finally:
            sys.stdout.flush()
            os._exit(code)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - began > timeout:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", time.monotonic() - began, ""
        time.sleep(0.2)
    seconds = time.monotonic() - began
    code = os.waitstatus_to_exitcode(status)
    if code == _WRONG_TREE:
        raise SystemExit(f"mutation: the tests under {tree} imported flare_chain from elsewhere; nothing recorded")
    tail = (log.read_text(errors="replace").strip().splitlines() or [""])[-1]
    return ("passed" if code == 0 else "failed"), seconds, tail


def recompile_contracts(tree: Path) -> bool:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "scripts/compile_contracts.py"], cwd=tree, env=env, capture_output=True, text=True
    )
    return done.returncode == 0


def run_module(path: str, chosen: list[Mutant], results: dict[str, dict[str, object]], *, retest: bool = False,
               scratch: Path = SCRATCH, tests: tuple[str, ...] | None = None, store: Path = RESULTS) -> None:
    """Run the chosen mutants not yet recorded (with ``retest``: the recorded survivors again)."""
    digest = source_hash(path)
    if retest:
        todo = [m for m in chosen if results.get(f"{m.key}@{digest}", {}).get("outcome") == "survived"]
    else:
        todo = [m for m in chosen if f"{m.key}@{digest}" not in results]
    if not todo:
        return
    tree = prepare_scratch(scratch)
    tests = tests or tests_for(path)
    target = tree / path
    original = target.read_text()
    is_sol = path.endswith(".sol")
    status, baseline, tail = run_tests(tree, tests, timeout=1800)
    if status != "passed":
        print(f"SKIP {path}: its tests fail unmutated ({tail})", flush=True)
        return
    print(f"{path}: {len(todo)} mutant(s), tests {' '.join(tests)} take {baseline:.0f} s", flush=True)
    store.parent.mkdir(parents=True, exist_ok=True)
    for mutant in todo:
        target.write_text(mutant.apply(original))
        try:
            if is_sol and not recompile_contracts(tree):
                status, seconds, tail = "invalid", 0.0, "does not compile"
            else:
                status, seconds, tail = run_tests(tree, tests, timeout=3 * baseline + 30)
        finally:
            target.write_text(original)  # a Solidity mutant's artifacts are rewritten by the next compile
        outcome = {"passed": "survived", "failed": "killed", "timeout": "timeout", "invalid": "invalid"}[status]
        row = {
            "key": mutant.key,
            "hash": digest,
            "module": path,
            "mutant": mutant.describe(),
            "outcome": outcome,
            "seconds": round(seconds, 1),
            "tests": list(tests),
        }
        results[f"{mutant.key}@{digest}"] = row
        with store.open("a") as out:
            out.write(json.dumps(row) + "\n")
        print(f"  {outcome:8} {seconds:5.0f} s  {mutant.describe()}", flush=True)


def sample(mutants: list[Mutant], size: int | None, seed: int) -> list[Mutant]:
    if size is None or len(mutants) <= size:
        return mutants
    picked = random.Random(seed).sample(range(len(mutants)), size)
    return [mutants[i] for i in sorted(picked)]


def report(paths: list[str], store: Path = RESULTS) -> str:
    """Markdown: score per module (current sources only) and every survivor."""
    results = load_results(store)
    lines = ["| module | mutants run | killed | score |", "|---|---:|---:|---:|"]
    survivors: list[str] = []
    total_run = total_killed = 0
    for path in paths:
        digest = source_hash(path)
        rows = [r for r in results.values()
                if r["module"] == path and r["hash"] == digest and r["outcome"] != "invalid"]
        if not rows:
            continue
        killed = sum(r["outcome"] in ("killed", "timeout") for r in rows)
        total_run += len(rows)
        total_killed += killed
        lines.append(f"| `{path}` | {len(rows)} | {killed} | {100 * killed / len(rows):.0f}% |")
        survivors += [f"- {r['mutant']}" for r in rows if r["outcome"] == "survived"]
    if total_run:
        lines.append(f"| **all** | {total_run} | {total_killed} | {100 * total_killed / total_run:.1f}% |")
    return "\n".join([*lines, "", "Survivors:", *(survivors or ["(none)"])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", help="a path in scope (repeatable); default: all")
    parser.add_argument("--sample", type=int, help="at most this many mutants per module, drawn at random")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    parser.add_argument("--grep", action="append",
                        help="only the mutants whose description contains this (repeatable; no sampling)")
    parser.add_argument("--tests", action="append",
                        help="run these tests instead of the module's own (repeatable; with --grep, for a few mutants)")
    parser.add_argument("--retest", action="store_true",
                        help="run the recorded survivors again (after adding tests), nothing else")
    parser.add_argument("--scratch", type=Path, default=SCRATCH,
                        help=f"where the mutated copy lives (default {SCRATCH.relative_to(ROOT)}); one per run")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help=f"the results file (default {RESULTS.relative_to(ROOT)}; the recorded run is committed "
                             "as docs/mutation-results.jsonl, so `--report --results` on it gives docs/mutation.md's table)")
    parser.add_argument("--list", action="store_true", help="print the mutants and their tests, run nothing")
    parser.add_argument("--report", action="store_true", help="print the score table from the recorded results")
    args = parser.parse_args(argv)
    scope = modules_in_scope()
    paths = args.module or scope
    unknown = [p for p in paths if p not in scope]
    if unknown:
        parser.error(f"not in the mutation scope: {unknown}; choose from {scope}")
    if args.report:
        print(report(paths, args.results))
        return 0
    results = load_results(args.results)
    if not args.list:
        warm_imports()
    for path in paths:
        found = mutants_of(path)
        if args.grep:
            chosen = [m for m in found if any(text in m.describe() for text in args.grep)]
        else:
            chosen = sample(found, args.sample, args.seed)
        if args.list:
            print(f"{path} -> {' '.join(tests_for(path))}")
            for mutant in chosen:
                print(f"  {mutant.describe()}")
            continue
        run_module(path, chosen, results, retest=args.retest, scratch=args.scratch.resolve(),
                   tests=tuple(args.tests) if args.tests else None, store=args.results)
    if not args.list:
        print(report(paths, args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
