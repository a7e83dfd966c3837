"""A local devnet in one command, without hardhat: chain, IPFS, contract, funded and registered nodes, daemons.

``start`` (see ``./start --help``):

1. starts a chain: anvil from the npm package ``@foundry-rs/anvil-linux-amd64``
   when ``npm ci`` installed it, else ``flare-chain chain serve`` (eth-tester over
   JSON-RPC); both mine on a fixed block time and fund the public dev accounts;
2. starts ``flare-chain ipfs serve`` on a repository in the run folder;
3. creates a keystore for the owner and for each node of ``nodes/*.toml`` if absent;
4. funds them from dev account 0, pins the base model (the reference model, or
   ``--model-dir``) to that IPFS, deploys the coordinator (owner = its keystore)
   and writes ``deployment.json`` naming the model's CID, which every node
   fetches (verified) instead of using a model it built itself; with
   ``--spec SPEC.toml`` it first pins that federation spec (naming this base
   model and probe corpus) and fixes its CID on the coordinator, which every
   daemon then binds (a node config that contradicts it stops the start);
5. registers every node, each signing with its own key (the contract checks that
   the VRF key belongs to the sender);
6. starts one ``flare-chain node run`` per node in the background (unless
   ``--no-daemons``), with URLs and paths overridden per run through
   ``FLARE__SECTION__KEY`` variables;
7. with ``--rounds N`` > 0, runs ``flare-chain rounds drive`` in the foreground and
   prints its summary.

Logs go to ``<run>/logs/``, pid files to ``<run>/pids/``, and ``<run>/devnet.json``
says what runs where. ``stop`` ends every process a pid file names, checking
first that the pid still runs the command it was started with.

The keys are devnet keys: the password defaults to a fixed string (override with
``$FLARE_DEVNET_PASSWORD``) and the scrypt cost is lowered. Never fund them on a
real chain.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RUN_DIR = REPO / ".flare" / "devnet"
PASSWORD_ENV = "FLARE_DEVNET_PASSWORD"
DEVNET_PASSWORD = "flare-devnet-only-password"
DEVNET_KDF_N = 2**14
FUND_WEI = 100 * 10**18
STAKE_WEI = 10**18
STOP_ORDER = ("node-", "driver", "ipfs", "chain")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "flare_chain.cli.main", *args]


def _say(text: str) -> None:
    print(f"devnet: {text}", flush=True)


# ---------------------------------------------------------------------------- processes


def _pid_file(run: Path, name: str) -> Path:
    return run / "pids" / f"{name}.pid"


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _record(run: Path, name: str, pid: int, argv: list[str]) -> None:
    """Write the pid file: the pid and the command line it was started with.

    ``argv`` is what we passed to exec, not a read of ``/proc/<pid>/cmdline``:
    Popen returns once the child's exec has begun, and until the kernel has
    laid out the new program's arguments that file reads empty, which made most
    pid files record ``[]`` and ``stop`` skip its same-command check.
    """
    path = _pid_file(run, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "cmdline": [str(a) for a in argv]}))


def _spawn(run: Path, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = run / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, cwd=REPO, start_new_session=True)
    _record(run, name, process.pid, argv)
    return process


def _alive(pid: int, expected: list[str]) -> bool:
    """Whether ``pid`` still runs ``expected``; never true for an empty ``expected`` (a pid alone may be reused)."""
    return bool(expected) and _cmdline(pid) == expected


def stop(run: Path, *, quiet: bool = False, timeout_s: float = 15.0) -> int:
    """End every process the run's pid files name (daemons first); returns how many were running."""
    files = sorted((run / "pids").glob("*.pid")) if (run / "pids").is_dir() else []
    files.sort(key=lambda p: next((i for i, pre in enumerate(STOP_ORDER) if p.stem.startswith(pre)), 99))
    stopped = 0
    for path in files:
        try:
            info = json.loads(path.read_text())
            pid, expected = int(info["pid"]), list(info.get("cmdline") or [])
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)
            continue
        if not expected:
            if not quiet:
                _say(f"{path.name} records no command line; not signalling pid {pid} (stop it by hand if it still "
                     "runs a devnet process)")
            path.unlink(missing_ok=True)
            continue
        if _alive(pid, expected):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _alive(pid, expected) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.1)
            if _alive(pid, expected):
                os.kill(pid, signal.SIGKILL)
            stopped += 1
            if not quiet:
                _say(f"stopped {path.stem} (pid {pid})")
        path.unlink(missing_ok=True)
    return stopped


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _running(run: Path) -> list[str]:
    names = []
    for path in sorted((run / "pids").glob("*.pid")) if (run / "pids").is_dir() else []:
        try:
            info = json.loads(path.read_text())
            if _alive(int(info["pid"]), list(info.get("cmdline") or [])):
                names.append(path.stem)
        except (OSError, ValueError, KeyError):
            continue
    return names


# ---------------------------------------------------------------------------- steps


def _start_chain(run: Path, kind: str, port: int, block_time_s: float) -> tuple[str, str, Any]:
    """Launch the chain; returns its kind, URL and a wait-until-ready callable."""
    from flare_chain.chain.anvil import AnvilProcess, anvil_available, free_port, rpc_answers

    if kind == "auto":
        kind = "anvil" if anvil_available() else "eth-tester"
    if kind == "anvil":
        anvil = AnvilProcess(port=port or None, block_time_s=block_time_s or None, log_path=run / "logs" / "chain.log")
        (run / "logs").mkdir(parents=True, exist_ok=True)
        anvil.start()
        assert anvil.pid is not None
        _record(run, "chain", anvil.pid, anvil.command())
        return "anvil", anvil.url, lambda: None
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    process = _spawn(run, "chain", _cli("chain", "serve", "--port", str(port), "--block-time", f"{block_time_s:g}"))
    return "eth-tester", url, lambda: _wait(lambda: rpc_answers(url), process, "the eth-tester chain",
                                            run / "logs" / "chain.log")


def _start_ipfs(run: Path, port: int) -> tuple[str, Any]:
    """Launch ``flare-chain ipfs serve``; returns its URL and a wait-until-ready callable."""
    from flare_chain.chain.anvil import free_port
    from flare_chain.ipfs import KuboClient

    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    process = _spawn(run, "ipfs", _cli("ipfs", "--repo", str(run / "ipfs"), "serve", "--port", str(port)))

    def ready() -> bool:
        try:
            with KuboClient(url, retries=0, timeout_s=2) as client:
                client.version()
            return True
        except Exception:
            return False

    return url, lambda: _wait(ready, process, "the IPFS RPC server", run / "logs" / "ipfs.log")


def _wait(ready: Any, process: subprocess.Popen[bytes], what: str, log: Path, timeout_s: float = 60.0) -> None:
    from flare_chain.errors import ChainError

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:]) if log.exists() else ""
            raise ChainError(f"{what} exited with status {process.returncode} at start ({tail}); see {log}")
        if ready():
            return
        time.sleep(0.2)
    raise ChainError(f"{what} did not become ready within {timeout_s:.0f} s; see {log}")


def _node_env(run: Path, name: str, rpc_url: str, ipfs_url: str) -> dict[str, str]:
    return {
        "FLARE__CHAIN__RPC_URL": rpc_url,
        "FLARE__CHAIN__DEPLOYMENT": json.dumps(str(run / "deployment.json")),
        "FLARE__IPFS__ENDPOINT": ipfs_url,
        "FLARE__NODE__DATA_DIR": json.dumps(str(run / name)),
        "FLARE__NODE__KEYSTORE": json.dumps(str(run / "keys" / f"{name}.json")),
        "FLARE__NODE__PASSWORD_ENV": json.dumps(PASSWORD_ENV),
    }


def _node_name(path: Path) -> str:
    """``[node].name`` of a config, read without validating it all (the daemon does that, and the
    full check imports torch, which costs seconds here)."""
    import tomllib

    from flare_chain.errors import ConfigError

    try:
        name = tomllib.loads(path.read_text(encoding="utf-8"))["node"]["name"]
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"node config {path} has no readable [node].name ({exc!r}); fix it or remove it") from None
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError(f"node config {path}: [node].name must be a plain non-empty string, got {name!r}")
    return name


def _keystore(path: Path, password: str) -> Any:
    from flare_chain.node.keys import create_keystore, load_account

    if not path.exists():
        create_keystore(path, password, kdf_iterations=DEVNET_KDF_N)
    return load_account(path, password)


def _publish_base_model(ipfs_url: str, model_dir: Path | None) -> str:
    """The owner's step before deploying: pin the base model (default: the reference model, built once per
    machine) to the devnet's IPFS; its CID goes into the deployment file and the nodes fetch that."""
    from flare_chain.basemodel import publish_model
    from flare_chain.ipfs import KuboClient

    if model_dir is None:
        from flare_chain.lora.reference import ensure_reference_model

        model_dir = ensure_reference_model(show_progress=False)
    with KuboClient(ipfs_url) as client:
        return publish_model(model_dir, client, show_progress=False)


def _clear_node_data(run: Path, names: list[str]) -> list[str]:
    """Remove node data folders a previous start left in ``run``; returns whose.

    Every start runs a new chain on which the owner deploys at nonce 0 again:
    the same chain id and contract address as before, another history. A node
    refuses a data folder bound to another chain (``NodeState.bind``), so the
    devnet, which owns these folders, clears them instead of starting daemons
    that would stop at once.
    """
    import shutil

    cleared = []
    for name in names:
        folder = run / name
        if (folder / "state.sqlite").exists():
            shutil.rmtree(folder)
            cleared.append(name)
    return cleared


def _load_spec(path: Path, configs: list[Path]) -> Any:  # -> FederationSpec
    """``--spec``, checked against every node config before anything starts.

    The daemons bind the on-chain spec and refuse it when their config sets a
    LoRA key or vote tolerance to another value (``require_config_agrees``);
    the devnet runs that same check here, so a spec its nodes would refuse
    stops the start with the node and key named, not four daemons later.
    """
    from flare_chain.errors import SpecMismatch
    from flare_chain.node.config import load_node_config
    from flare_chain.node.spec_binding import require_config_agrees
    from flare_chain.protocol.spec import FederationSpec

    spec = FederationSpec.from_toml(path)
    for config_path in configs:
        config = load_node_config(config_path)
        explicit = "vote_tolerance" in config.committee.model_fields_set
        try:
            require_config_agrees(spec, str(path), training=config.training,
                                  vote_tolerance=config.committee.vote_tolerance if explicit else None)
        except SpecMismatch as exc:
            raise SpecMismatch(f"{config_path} would refuse --spec {path}: {exc}, or set the spec to the "
                               "node configs' value") from None
    return spec


def _pin_spec(spec: Any, spec_path: Path, ipfs_url: str, base_cid: str, node_config: Path) -> tuple[Any, str]:
    """The spec naming the devnet's base model and probe corpus, pinned to its IPFS; returns it and its CID.

    ``rounds drive --node-config`` pins the default probe corpus of that node's
    task, so its CID is known before the deployment and fixed in the spec.
    """
    from flare_chain.cli.rounds import default_probe_corpus
    from flare_chain.ipfs import KuboClient
    from flare_chain.node.bundles import probe_corpus_cid
    from flare_chain.node.endpoint import EndpointStore
    from flare_chain.protocol.spec import pin_spec

    spec = spec.naming_published(base_model_cid=base_cid, probe_corpus_cid=probe_corpus_cid(
        default_probe_corpus(node_config)), source=f"--spec {spec_path}")
    with KuboClient(ipfs_url) as client:
        return spec, pin_spec(EndpointStore(client), spec)


def start(args: argparse.Namespace) -> int:
    from flare_chain.chain import CoordinatorClient, fund_accounts
    from flare_chain.chain.coordinator import DEFAULT_MAX_SAMPLE_COUNT
    from flare_chain.chain.deployment import ConstructorParams, connect_rpc, deploy, write_deployment
    from flare_chain.cli.deploy import spec_sample_cap

    run: Path = args.run_dir.resolve()
    if running := _running(run):
        raise SystemExit(f"devnet: {', '.join(running)} from an earlier start still run in {run}; "
                         "run hardhat-free-devnet/stop first")
    configs = sorted(args.nodes_dir.glob("*.toml"))
    if not configs:
        raise SystemExit(f"devnet: no node configs in {args.nodes_dir}")
    spec = _load_spec(args.spec, configs) if args.spec is not None else None
    password = os.environ.get(PASSWORD_ENV) or DEVNET_PASSWORD
    run.mkdir(parents=True, exist_ok=True)
    for stale in ("deployment.json", "devnet.json"):
        (run / stale).unlink(missing_ok=True)
    try:
        kind, rpc_url, chain_ready = _start_chain(run, args.chain, args.chain_port, args.block_time)
        ipfs_url, ipfs_ready = _start_ipfs(run, args.ipfs_port)
        chain_ready()
        _say(f"chain ({kind}) on {rpc_url}")
        ipfs_ready()
        _say(f"IPFS RPC on {ipfs_url} (repository {run / 'ipfs'})")
        w3 = connect_rpc(rpc_url)
        owner = _keystore(run / "keys" / "owner.json", password)
        nodes: dict[str, tuple[Path, Any]] = {}
        for path in configs:
            name = _node_name(path)
            nodes[name] = (path, _keystore(run / "keys" / f"{name}.json", password))
        for name in _clear_node_data(run, list(nodes)):
            _say(f"{name}: removed its data folder {run / name}, written on the chain of an earlier start")
        fund_accounts(w3, [owner, *(acct for _, acct in nodes.values())], FUND_WEI, funder=w3.eth.accounts[0])
        base_cid = _publish_base_model(ipfs_url, args.model_dir)
        _say(f"base model {base_cid} pinned; the nodes load it by this CID")
        max_sample_count, spec_cid = DEFAULT_MAX_SAMPLE_COUNT, None
        if spec is not None:
            spec, spec_cid = _pin_spec(spec, args.spec, ipfs_url, base_cid, configs[0].resolve())
            max_sample_count = spec_sample_cap(spec, DEFAULT_MAX_SAMPLE_COUNT, source=str(args.spec))
            _say(f"federation spec {spec_cid} pinned ({args.spec}: aggregator {spec.aggregator.name}, "
                 f"privacy {'on' if spec.privacy.enabled else 'off'}); the coordinator fixes it, the nodes bind it")
        params = ConstructorParams(approval_threshold_bps=args.threshold_bps, min_committee_size=args.min_committee,
                                   max_sample_count=max_sample_count)
        record, _ = deploy(w3, owner, params, rpc_url=rpc_url, base_model_cid=base_cid,
                           federation_spec_cid=spec_cid)
        write_deployment(record, run / "deployment.json", overwrite=True)
        _say(f"coordinator {record.coordinator} on chain {record.chain_id} (owner {owner.address})")
        coordinator = CoordinatorClient(w3, record.coordinator, deployment_block=record.deployment_block)
        for name, (_, account) in nodes.items():
            if not coordinator.is_registered(account.address):
                coordinator.register_node(account, STAKE_WEI)
            _say(f"{name} {account.address} funded and registered")
        state: dict[str, Any] = {
            "chain": kind, "rpc_url": rpc_url, "ipfs_url": ipfs_url, "chain_id": record.chain_id,
            "deployment": str(run / "deployment.json"), "coordinator": record.coordinator, "owner": owner.address,
            "spec_cid": spec_cid,
            "nodes": {name: {"address": acct.address, "config": str(path)} for name, (path, acct) in nodes.items()},
            "daemons": not args.no_daemons,
        }
        (run / "devnet.json").write_text(json.dumps(state, indent=2) + "\n")
        if not args.no_daemons:
            for name, (path, _) in nodes.items():
                env = {**os.environ, **_node_env(run, name, rpc_url, ipfs_url), PASSWORD_ENV: password}
                process = _spawn(run, name, _cli("node", "run", "--config", str(path.resolve())), env)
                _say(f"{name} daemon pid {process.pid}, log {run / 'logs' / f'{name}.log'}")
    except BaseException:
        stop(run, quiet=True)
        raise
    if args.rounds <= 0:
        _say(f"up; stop with hardhat-free-devnet/stop{'' if args.run_dir == DEFAULT_RUN_DIR else ' --run-dir ' + str(run)}")
        return 0
    drive = _cli("rounds", "drive", "--deployment", str(run / "deployment.json"), "--rpc", rpc_url,
                 "--keystore", str(run / "keys" / "owner.json"), "--password-env", PASSWORD_ENV,
                 "--ipfs", ipfs_url, "--node-config", str(configs[0].resolve()), "--rounds", str(args.rounds),
                 "--submission-blocks", str(args.submission_blocks), "--claim-blocks", str(args.claim_blocks),
                 "--proposal-blocks", str(args.proposal_blocks), "--voting-blocks", str(args.voting_blocks),
                 "--committee-size", str(args.committee_size), *(["--mine"] if args.block_time <= 0 else []))
    env = {**os.environ, **_node_env(run, next(iter(nodes)), rpc_url, ipfs_url), PASSWORD_ENV: password}
    _say(f"driving {args.rounds} round(s); daemons keep running afterwards until stop")
    code = subprocess.run(drive, env=env, cwd=REPO, check=False).returncode
    if not args.no_daemons:
        print(_learning_table(run, list(nodes), args.rounds), flush=True)
    return code


def _held_out_losses(run: Path, names: list[str], rounds: int, timeout_s: float) -> dict[int, dict[str, float]]:
    """``{round: {node: held-out loss}}`` from the nodes' state folders; round 0 is the base.

    Each daemon measures every committed adapter on its own held-out data when it pulls it
    (the pull step's ``held_out_loss``) and the base at its first training (``val_loss_before``).
    The last round's pulls trail the driver by a tick, so this waits up to ``timeout_s`` for them.
    """
    from flare_chain.errors import FlareError
    from flare_chain.node.state import NodeState, StepStatus

    deadline = time.monotonic() + timeout_s
    while True:
        losses: dict[int, dict[str, float]] = {r: {} for r in range(rounds + 1)}
        pending = 0
        for name in names:
            try:
                state = NodeState(run / name / "state.sqlite", read_only=True)
            except FlareError:
                pending += 1
                continue
            try:
                train = state.get(1, "train")
                if train is not None and "val_loss_before" in train.detail:
                    losses[0][name] = float(train.detail["val_loss_before"])
                for r in range(1, rounds + 1):
                    pull = state.get(r, "pull")
                    if pull is None or not pull.status.is_final:
                        pending += 1
                    elif pull.status == StepStatus.DONE and "held_out_loss" in pull.detail:
                        losses[r][name] = float(pull.detail["held_out_loss"])
            finally:
                state.close()
        if pending == 0 or time.monotonic() > deadline:
            return losses
        time.sleep(1.0)


def _learning_table(run: Path, names: list[str], rounds: int, timeout_s: float = 120.0) -> str:
    """Each node's held-out loss of the base and of every committed global adapter, their mean and its change.

    A failed round keeps the previous adapter, so its row repeats the previous losses (change 0).
    """
    losses = _held_out_losses(run, names, rounds, timeout_s)
    lines = ["held-out loss of the global adapter on each node's own held-out data (measured by the node "
             "when it pulled it)",
             "  ".join(["round", *(f"{n:>8}" for n in names), "    mean", "  change"])]
    previous: dict[str, float] = {}
    previous_mean: float | None = None
    falls = []
    for r in range(rounds + 1):
        row = {**previous, **losses[r]} if r else dict(losses[0])
        values = [row.get(n) for n in names]
        mean = sum(v for v in values if v is not None) / len(names) if all(v is not None for v in values) else None
        change = "" if mean is None or previous_mean is None else f"{(mean - previous_mean) / previous_mean:+.1%}"
        if r and mean is not None and previous_mean is not None:
            falls.append(mean < previous_mean)
        lines.append("  ".join([f"{'base' if r == 0 else r:>5}", *("       -" if v is None else f"{v:8.4f}"
                                                                  for v in values),
                                "       -" if mean is None else f"{mean:8.4f}", f"{change:>8}"]))
        previous, previous_mean = row, mean if mean is not None else previous_mean
    measured = len(falls)
    verdict = (f"the mean fell in {sum(falls)} of {measured} round(s)" if measured
               else "no round measured by every node (see the nodes' logs)")
    lines.append(verdict)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hardhat-free-devnet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    s = sub.add_parser("start", help="start chain, IPFS, deploy, fund and register nodes, daemons, drive rounds")
    s.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help=f"state folder (default {DEFAULT_RUN_DIR})")
    s.add_argument("--nodes-dir", type=Path, default=REPO / "nodes", help="folder of node TOML configs")
    s.add_argument("--chain", choices=("auto", "anvil", "eth-tester"), default="auto",
                   help="auto: anvil if its npm package is installed, else the eth-tester JSON-RPC server")
    s.add_argument("--chain-port", type=int, default=8545, help="0: any free port")
    s.add_argument("--ipfs-port", type=int, default=5001, help="0: any free port")
    s.add_argument("--block-time", type=float, default=1.0, metavar="S", help="seconds per block (default 1; 0: a block per transaction only)")
    s.add_argument("--no-daemons", action="store_true", help="set everything up but start no node daemon")
    s.add_argument("--model-dir", type=Path, default=None, metavar="DIR",
                   help="base model folder the owner publishes by CID (default: the reference model)")
    s.add_argument("--spec", type=Path, default=None, metavar="SPEC.toml",
                   help="federation spec to pin and fix on the coordinator (e.g. specs/devnet-exact-lora.toml); "
                        "base_model.cid and probe_corpus_cid are filled with the devnet's, and every node config "
                        "must agree with its lora and vote tolerance (default: no spec, the defaults)")
    s.add_argument("--rounds", type=int, default=3, help="rounds to drive after start (0: none)")
    s.add_argument("--threshold-bps", type=int, default=6666)
    s.add_argument("--min-committee", type=int, default=2)
    s.add_argument("--committee-size", type=int, default=20, help="expected committee weight k (Poisson seat weights)")
    s.add_argument("--submission-blocks", type=int, default=60)
    s.add_argument("--claim-blocks", type=int, default=10)
    s.add_argument("--proposal-blocks", type=int, default=30)
    s.add_argument("--voting-blocks", type=int, default=30)
    t = sub.add_parser("stop", help="stop every process start started (by pid files)")
    t.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    args = parser.parse_args(argv)
    from flare_chain.errors import FlareError
    from flare_chain.logs import configure_logging

    configure_logging("INFO")
    try:
        if args.action == "stop":
            count = stop(args.run_dir.resolve())
            _say(f"stopped {count} process(es)" if count else "nothing was running")
            return 0
        return start(args)
    except FlareError as exc:
        print(f"devnet: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
