"""`sweep --executor ray`: each run of a sweep is a Ray task, on a local Ray instance or on a cluster
(`--address auto`). Ray does the scheduling; we only say what each task needs and what depends on what.

- A task asks for one GPU where the cluster has GPUs, else `cpus_per_run` CPUs (torch uses that many
  threads). It loads the data itself, writes its record to the shared `--out`, and its partial state
  beside it, so a task that is retried (or a sweep run again) resumes from its last epoch.
- The shared proxy of each seed is one task of its own, and every run that uses it depends on it: it is
  trained once, not once per method.
- A failed task is retried once (Ray's `max_retries` with `retry_exceptions`), then reported.
- `--out` and `--cache-dir` must be on a file system every node sees, and every node needs this package.
- A local instance (no `--address`) is started with Ray's token authentication on and a fresh random token
  that only this process and the workers it starts know: Ray 2.x's gRPC servers listen on every interface
  and offer no setting to bind them to loopback, so without it anyone on the network could submit work. A
  cluster joined with `--address` is the user's to secure (see the README's Security section).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import socket
import sys
from pathlib import Path

import torch

from benchmark.errors import UserError
from benchmark.progress import Progress
from benchmark.protocol import Protocol
from benchmark.proxy import build_proxy
from benchmark.run import RunSpec, load_protocol_data, resolve_device, run_one
from benchmark.selection import create_selector

log = logging.getLogger("benchmark")
POLL_SECONDS = 10  # how often the progress line is refreshed while no task finishes
AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")


def local_auth() -> dict[str, str]:
    """The environment that makes a new local Ray instance (and the workers it starts) demand a token: a fresh
    256-bit one, never written to disk by us."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}

_loaded: dict[tuple, tuple] = {}  # per worker process: the data of the last protocol it ran


def _data(protocol: Protocol, cache_dir: Path, data_root: Path | None, threads: int):
    """This worker's data for `protocol`, loaded once per worker (Ray reuses worker processes)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # Ray forwards these lines to the driver
    torch.set_num_threads(threads)
    device = resolve_device("auto")  # Ray sets CUDA_VISIBLE_DEVICES to the task's GPU
    key = (protocol.dataset, protocol.train_per_class, protocol.test_per_class, protocol.full_test_clean, str(device),
           str(data_root), str(cache_dir))
    if key not in _loaded:
        _loaded.clear()
        _loaded[key] = load_protocol_data(protocol, device=device, data_root=data_root, cache_dir=cache_dir)
    return _loaded[key]


def _proxy_task(protocol: Protocol, seed: int, cache_dir: Path, data_root: Path | None, threads: int,
                own: tuple[int, int] | None) -> int:
    """The shared proxy of `seed` (own=None), or the `own` (count, epochs) proxies a method trains itself."""
    data, _ = _data(protocol, cache_dir, data_root, threads)
    features = build_proxy(protocol, data, seed=seed, cache_dir=cache_dir)
    if own is None:
        features.embeddings()  # trains and caches it, or finds it cached
    else:
        features.proxy_models(*own)
    return seed


def _run_task(spec: RunSpec, protocol: Protocol, cache_dir: Path, data_root: Path | None, threads: int,
              proxy_seed: int | None, eval_batch_size: int | None) -> dict:
    # proxy_seed is the proxy task's result: Ray starts this task only after its proxies are in the cache
    data, pool_indices = _data(protocol, cache_dir, data_root, threads)
    return run_one(spec, protocol=protocol, data=data, pool_indices=pool_indices, cache_dir=cache_dir,
                   eval_batch_size=eval_batch_size)


def _reload_auth_settings() -> None:
    """Ray reads RAY_AUTH_MODE and the token once, when it is imported: where it was imported before the token
    was set, it must read them again (else its client sends no token and the new instance refuses it)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def failure_reason(error: Exception) -> str:
    """One line for a task's failure: the selector's or the harness's own message where there is one."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, UserError):
        text = str(cause)
    elif isinstance(cause, BaseException):
        text = f"{type(cause).__name__}: {cause}"
    else:
        text = f"{type(error).__name__}: {error}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _check_reachable(address: str | None, seconds: float = 5.0) -> None:
    """Ray keeps retrying an address where nothing listens for minutes; a HOST:PORT is probed first."""
    if not address or address == "auto" or ":" not in address:
        return
    host, _, port = address.split("://")[-1].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except (OSError, ValueError) as error:
        raise UserError(f"no Ray cluster answers at {address} ({error}); start one with `ray start --head` and pass "
                        f"its address, or leave out --address for a local Ray instance") from None


def run_on_ray(pending: list[RunSpec], progress: Progress, *, protocol: Protocol, cache_dir: Path,
               data_root: Path | None, address: str | None, cpus_per_run: int,
               eval_batch_size: int | None = None) -> None:
    if importlib.util.find_spec("ray") is None:
        raise UserError("--executor ray needs Ray: pip install 'coreset-bench[ray]' (or pip install ray)")
    _check_reachable(address)
    saved = {name: os.environ.get(name) for name in AUTH_VARIABLES}
    try:
        already_imported = "ray" in sys.modules  # Ray reads its auth settings when it is imported
        started_here = not (already_imported and sys.modules["ray"].is_initialized())
        if not address and started_here:
            os.environ.update(local_auth())
            if already_imported:
                _reload_auth_settings()
        import ray

        _run(ray, pending, progress, protocol=protocol, cache_dir=cache_dir, data_root=data_root, address=address,
             cpus_per_run=cpus_per_run, eval_batch_size=eval_batch_size, started_here=started_here)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run(ray, pending: list[RunSpec], progress: Progress, *, protocol: Protocol, cache_dir: Path,
         data_root: Path | None, address: str | None, cpus_per_run: int, eval_batch_size: int | None,
         started_here: bool) -> None:
    try:
        # a new local instance gets no dashboard; an existing cluster keeps its settings
        extra = {} if address else {"include_dashboard": False, "_node_ip_address": "127.0.0.1"}
        ray.init(address=address, logging_level=logging.WARNING, **extra)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise UserError(f"cannot reach a Ray cluster at {address!r} ({failure_reason(error)}); start one with "
                        f"`ray start --head`, or leave out --address for a local Ray instance") from None
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if gpus == 0 and cpus_per_run > resources.get("CPU", 0):
            raise UserError(f"--cpus-per-run {cpus_per_run} is more than the cluster's {int(resources.get('CPU', 0))} "
                            f"CPUs: no run could ever start")
        need = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_gpus": 0, "num_cpus": cpus_per_run}
        progress.slots = gpus or int(resources.get("CPU", 1) // cpus_per_run)
        options = {**need, "max_retries": 1, "retry_exceptions": True}
        proxy_task = ray.remote(_proxy_task).options(**options)
        run_task = ray.remote(_run_task).options(**options)
        threads = 1 if gpus else cpus_per_run
        log.info("Ray: %s; each run asks for %s", ", ".join(f"{v:g} {k}" for k, v in sorted(resources.items())
                                                           if k in ("CPU", "GPU")),
                 "1 GPU" if gpus else f"{cpus_per_run} CPU(s)")
        proxies = {}  # one task per set of proxies (seed, own), which every run that needs it waits for
        tasks = {}
        for spec in pending:
            own = create_selector(spec.method, spec.params).own_proxies()
            needs = (spec.seed, None) if spec.uses_proxy else (spec.seed, own) if own[0] else None
            if needs is not None and needs not in proxies:
                proxies[needs] = proxy_task.remote(protocol, needs[0], cache_dir, data_root, threads, needs[1])
            tasks[run_task.remote(spec, protocol, cache_dir, data_root, threads, proxies.get(needs),
                                  eval_batch_size)] = spec
            progress.start(spec)
        while tasks:
            ready, _ = ray.wait(list(tasks), num_returns=1, timeout=POLL_SECONDS)
            for ref in ready:
                spec = tasks.pop(ref)
                try:
                    progress.finish(spec, ray.get(ref))
                except ray.exceptions.RayError as error:
                    progress.finish(spec, None, failure_reason(error))
            if not ready:
                progress.refresh()
    finally:
        if started_here:
            ray.shutdown()
