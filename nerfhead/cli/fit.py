"""``nerfhead fit``: train an avatar (splat head or nerf head) on a capture."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tyro

from nerfhead.engine.runlock import locks_run


def busy_cores(window_s: float = 0.5) -> float | None:
    """How many cores other processes keep busy now: the non-idle share of ``/proc/stat``'s CPU time over
    ``window_s`` seconds (this process sleeps meanwhile) times the core count; None where that cannot be read.
    Unlike the 1-minute load average it does not still count a job that ended seconds ago."""
    import time

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        return sum(v), v[3] + v[4]

    try:
        t0, i0 = sample()
        time.sleep(window_s)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if t1 <= t0:
        return None
    return (os.cpu_count() or 1) * (1.0 - (i1 - i0) / (t1 - t0))


def choose_threads(threads: int | None, busy: float | None = None) -> int:
    """Torch threads for a fit: ``threads`` if given (0 keeps torch's default), else 1 on a busy machine and
    torch's default otherwise. Busy: other processes keep at least half the cores busy now (``busy`` cores, by
    default :func:`busy_cores`), or, where that cannot be measured, the 1-minute load average is at or above the
    core count. OpenMP threads spinning against other processes slow a step several-fold."""
    import torch

    if threads is not None:
        return threads if threads > 0 else torch.get_num_threads()
    cores = os.cpu_count() or 1
    now = busy_cores() if busy is None else busy
    if now is not None:
        return 1 if now >= 0.5 * cores else torch.get_num_threads()
    loaded = hasattr(os, "getloadavg") and os.getloadavg()[0] >= cores
    return 1 if loaded else torch.get_num_threads()


def parse_overrides(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[1, 2]", "d=text"]`` → ``{"a.b": 1, "c": (1, 2), "d": "text"}`` (JSON values; lists become
    tuples; anything that is not JSON stays a string).

    Raises:
        InputError: an item without ``=``.
    """
    from nerfhead.errors import InputError

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise InputError("--set", f"expected KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        out[key.strip()] = tuple(value) if isinstance(value, list) else value
    return out


@dataclass(frozen=True)
class FitOptions:
    """What ``nerfhead fit`` does besides which capture and run folder (:func:`run_fit`)."""

    model: str = "splat"
    """A registered model (:mod:`nerfhead.models.registry`)."""
    preset: str = "default"
    """The model's named fit config."""
    resume: bool = False
    """Continue the run from its newest checkpoint, with its saved settings."""
    steps: int | None = None
    """Override the config's ``trainer.steps``."""
    max_minutes: float | None = None
    """Override the config's ``trainer.max_minutes``."""
    seed: int | None = None
    """Override the config's ``trainer.seed``."""
    device: str = "auto"
    """auto, cpu or cuda."""
    progress: bool = True
    """Show the progress bar."""
    evaluate: bool = True
    """Evaluate the held-out split at the end (eval.json)."""
    overrides: dict[str, Any] | None = None
    """Dotted config keys to values (``{"model.sh_degree": 1}``), applied after the preset (or, on resume, after
    the run's saved config) and before ``steps`` / ``max_minutes`` / ``seed``."""
    threads: int | None = None
    """CPU threads (None: :func:`choose_threads`)."""
    viewer: Any = None
    """A :class:`nerfhead.viewer.server.ViewerConfig`: show the model in the web viewer while it trains."""
    viewer_wait: bool = False
    """Keep serving the finished fit in the viewer until Ctrl-C (or SIGTERM)."""
    allow_outside_paths: bool = False
    """Let the capture's file paths point outside its folder."""


@locks_run("out", "fit")
def run_fit(capture: Path, out: Path, options: FitOptions | None = None, **changes: Any) -> dict[str, Any]:
    """The work of ``nerfhead fit`` as a function; returns the summary it writes to ``RUN/fit.json``.

    ``options`` (default :class:`FitOptions`), with ``changes`` to its fields applied
    (``run_fit(cap, run, preset="fast", steps=6)``).

    Everything a user supplies is checked before the first write (:mod:`nerfhead.cli.checks`); the run folder
    is locked for the whole call, and a resume reuses the run's saved settings (preset, device, threads,
    outside capture paths) unless given again.
    """
    o = dataclasses.replace(options if options is not None else FitOptions(), **changes)
    model, preset, resume, device, threads = o.model, o.preset, o.resume, o.device, o.threads
    allow_outside_paths, viewer = o.allow_outside_paths, o.viewer
    import torch

    from nerfhead.cli.checks import (
        check_device,
        check_fit_out,
        check_overrides,
        check_resume_weights,
        fit_settings,
    )
    from nerfhead.data.loaders import load_capture
    from nerfhead.engine.checkpoint import atomic_write_json, trim_log
    from nerfhead.engine.config import from_dict, replace_nested
    from nerfhead.engine.distributed import init_from_env, shutdown
    from nerfhead.engine.trainer import fit
    from nerfhead.errors import InputError
    from nerfhead.models.avatar import read_avatar_json
    from nerfhead.models.registry import get

    kind = get(model)  # an unknown --model fails here, before anything is read
    saved = check_fit_out(out, model, resume)  # the run's saved settings on resume, else {}
    preset = saved.get("preset", preset)
    dev = check_device(saved.get("device", device) if device == "auto" else device)
    threads = saved.get("threads", threads) if threads is None else threads
    allow_outside_paths = allow_outside_paths or bool(saved.get("allow_outside_paths"))
    dist = init_from_env(dev)  # under torchrun: join its group (gloo on CPU, NCCL on GPUs)
    if dist.active and dev == "cuda":
        dev = f"cuda:{dist.local_rank}"
    if dev == "cpu":
        n = choose_threads(threads)
        if dist.active and threads is None:  # the ranks on this node share its cores
            local = int(os.environ.get("LOCAL_WORLD_SIZE", dist.world_size))
            n = max(1, (os.cpu_count() or 1) // max(local, 1))
        torch.set_num_threads(n)
    cap = load_capture(capture, allow_outside_paths=allow_outside_paths)
    if cap.drive is None:
        raise InputError(capture, "the capture has no drive", hint="track it first (nerfhead track)")
    cap.check_files(decode=4)  # every header, a few decoded: a bad image fails now, not at its first step
    if resume and (out / "avatar.json").is_file():
        cfg = from_dict(kind.fit_config, read_avatar_json(out).get("fit", {}), where=str(out / "avatar.json"))
    else:
        cfg = kind.preset(preset)
    edits: dict[str, Any] = {"trainer.progress": o.progress, **(o.overrides or {})}
    if o.steps is not None:
        edits["trainer.steps"] = o.steps
    if o.max_minutes is not None:
        edits["trainer.max_minutes"] = o.max_minutes
    if o.seed is not None:
        edits["trainer.seed"] = o.seed
    check_overrides(cfg, edits)
    try:
        cfg = replace_nested(cfg, **edits)
    except (AttributeError, TypeError) as e:
        raise InputError("--set", f"bad config override ({e})") from None
    torch.manual_seed(cfg.trainer.seed)  # initialisation (hash tables, MLPs) is seeded too
    task = kind.make_task(cap, cfg, dev)
    check_resume_weights(saved, task.state_tensors())
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if resume:
            trim_log(out, saved.get("step", 0))  # records a killed fit wrote after its last checkpoint
        cap.drive.save_npz(out / "drive.npz")
    live = None
    if viewer is not None and dist.is_main:
        from nerfhead.viewer.live import LiveFit

        live = LiveFit(task.model, cap.drive, out, viewer, device=dev, name=f"{model} fit").start()
        print(f"nerfhead viewer (live fit): {live.url}", flush=True)
    try:
        result = fit(
            task,
            out,
            cfg.trainer,
            resume=resume,
            extra_spec={
                "capture": str(Path(capture).resolve()),
                "fit_settings": fit_settings(
                    model, preset, dev, torch.get_num_threads(), allow_outside_paths
                ),
            },
            monitor=live,
        )
        summary: dict[str, Any] = {
            "model": model,
            "preset": preset,
            "device": dev,
            "threads": torch.get_num_threads(),
            "world_size": dist.world_size,
            "steps": result.step,
            "start_step": result.start_step,
            "seconds": result.seconds,
            "nan_restores": result.nan_restores,
            "train": result.scalars,
            "quick_eval": result.eval,
            "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        }
        if o.evaluate and dist.is_main:
            from nerfhead.models.run_eval import evaluate_run

            summary["eval"] = evaluate_run(out, capture, device=dev)["mean"]
        if dist.is_main:
            atomic_write_json(out / "fit.json", summary)
        if live is not None and o.viewer_wait:
            _serve_until_interrupted(live.url)
    finally:
        if live is not None:
            live.stop()
        shutdown()
    return summary


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """The torchrun command line that runs ``nerfhead <argv>`` on ``nproc`` local processes (``--nproc`` and its
    value removed from ``argv``). ``--standalone`` picks a free rendezvous port on this machine."""
    import sys

    rest: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        rest.append(a)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] + [
        "-m",
        "nerfhead",
        *rest,
    ]


def launch_torchrun(nproc: int) -> None:
    """Re-run this ``nerfhead fit`` command under torchrun with ``nproc`` processes and exit with its code."""
    import subprocess
    import sys

    from nerfhead.errors import InputError

    if nproc < 1:
        raise InputError("--nproc", f"must be >= 1, got {nproc}")
    argv = sys.argv[1:]
    if "fit" not in argv:
        argv = ["fit", *argv]
    raise SystemExit(subprocess.call(torchrun_command(nproc, argv)))


def _serve_until_interrupted(url: str) -> None:
    """Block until Ctrl-C or SIGTERM (the finished fit stays in the viewer)."""
    import signal
    import time

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    print(f"fit finished; the viewer keeps serving it at {url}  (Ctrl-C to stop)", flush=True)
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(
    capture: Annotated[Path, tyro.conf.Positional],
    out: Path = Path("runs/avatar"),
    model: str = "splat",
    preset: str = "default",
    resume: bool = False,
    steps: int | None = None,
    max_minutes: float | None = None,
    seed: int | None = None,
    device: str = "auto",
    evaluate: bool = True,
    overrides: Annotated[tuple[str, ...], tyro.conf.arg(name="set")] = (),
    threads: int | None = None,
    viewer: bool = False,
    viewer_port: int = 8080,
    viewer_host: str = "127.0.0.1",
    viewer_wait: bool = True,
    nproc: int = 1,
    allow_outside_paths: bool = False,
    given: Annotated[tuple[str, ...], tyro.conf.Suppress] = (),
    config: Any = None,
) -> None:
    """Fit an avatar to a capture; writes avatar.json, checkpoints, drive.npz, fit.json and eval.json to OUT.

    The model's fit config is set with nested options (``--model.sh-degree 1``, ``--strategy.max-gaussians
    50000``, ``--trainer.steps 500``; ``nerfhead fit --model nerf --help`` lists the nerf head's), whose defaults
    are the preset's; ``--set KEY=JSON`` is the same by dotted key.

    Args:
        capture: capture folder (nerfhead/nerfstudio transforms.json or NeRSemble) with a drive.
        out: run folder.
        model: a registered model (nerfhead.models.registry): splat (Gaussians bound to the ICT mesh) or nerf
            (deformation field + hash ensemble).
        preset: named settings: default (a CPU budget: the splat head stops after 7.5 minutes, the NeRF head
            after 11; enough for a 128x128 rig capture or a tracked 360x288 video), fast (smoke test), quality
            (long GPU schedule). A one-camera capture holds out 20% of its timesteps in three blocks inside
            speech (from its audio; the last 20% without audio; ``--set split.kind=\"tail\"`` for the old
            policy), with both models.
        resume: continue the run in OUT from its newest checkpoint (with its saved settings).
        steps: override the preset's number of steps.
        max_minutes: override the preset's time budget (0: none).
        seed: override the seed.
        device: auto, cpu or cuda.
        evaluate: run the held-out evaluation at the end (eval.json, eval_grid.png).
        overrides: config overrides KEY=VALUE (dotted keys, JSON values), e.g. model.sh_degree=1 or
            strategy.max_gaussians=50000.
        threads: CPU threads (0: torch's default; default: 1 when the machine is busy, else torch's default).
        viewer: show the fit live in the web viewer (``nerfhead view``'s page, re-rendered as it trains).
        viewer_port: the live viewer's port.
        viewer_host: the live viewer's interface (anything but 127.0.0.1 exposes it to the network).
        viewer_wait: keep serving the finished fit until Ctrl-C.
        nproc: data-parallel processes on this machine (runs this command under ``torchrun --standalone``;
            gloo on CPU, NCCL with one GPU per process). Already under torchrun (``WORLD_SIZE`` set), the
            ranks torchrun started are used and this is ignored. See README "Scaling out".
        allow_outside_paths: let the capture's file_path / mask_path point outside its folder (refused by
            default: a capture file could otherwise make the fit read any file).
    """
    from nerfhead.engine.distributed import env_world_size

    if nproc != 1 and env_world_size() <= 1:
        launch_torchrun(nproc)
    live_cfg = None
    if viewer:
        import sys

        from nerfhead.cli.view import host_warning
        from nerfhead.viewer.server import ViewerConfig

        warning = host_warning(viewer_host, out)
        if warning:
            print(warning, file=sys.stderr)
        live_cfg = ViewerConfig(host=viewer_host, port=viewer_port)
    options = FitOptions(
        model=model,
        preset=preset,
        resume=resume,
        steps=steps,
        max_minutes=max_minutes,
        seed=seed,
        device=device,
        evaluate=evaluate,
        overrides={**config_changes(config, model, preset, given), **parse_overrides(overrides)},
        threads=threads,
        viewer=live_cfg,
        viewer_wait=viewer_wait,
        allow_outside_paths=allow_outside_paths,
    )
    s = run_fit(capture, out, options)
    line = {"steps": s["steps"], "minutes": round(s["seconds"] / 60, 2)}
    if "eval" in s:
        line.update({"psnr": round(s["eval"]["psnr"], 3), "ssim": round(s["eval"]["ssim"], 4)})
    print(json.dumps({"run": str(out), **line}))


def config_changes(config: Any, model: str, preset: str, given: tuple[str, ...] = ()) -> dict[str, Any]:
    """The dotted keys of ``config`` (the nested options' result) that the command line set: those where it
    differs from the preset it started from, and those in ``given`` (named on the command line, even with the
    preset's value: on ``--resume`` they must override the run's saved settings)."""
    from nerfhead.models.registry import get

    if config is None:
        return {}

    def diff(a: Any, b: Any, prefix: str) -> dict[str, Any]:
        if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b) and type(a) is type(b):
            out: dict[str, Any] = {}
            for f in dataclasses.fields(a):
                out.update(diff(getattr(a, f.name), getattr(b, f.name), f"{prefix}{f.name}."))
            return out
        return {} if a == b else {prefix[:-1]: a}

    out = diff(config, get(model).preset(preset), "")
    for key in given:
        node = config
        for part in key.split("."):
            node = getattr(node, part)
        out[key] = node
    return out


def _flag(argv: list[str], name: str, default: str) -> str:
    """The value of option ``name`` in ``argv`` (``--name V`` or ``--name=V``; the last one wins)."""
    value = default
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(name + "="):
            value = a.split("=", 1)[1]
    return value


def _values(argv: list[str], name: str) -> list[str]:
    """The values that follow option ``name`` in ``argv`` (every occurrence, up to the next option)."""
    out: list[str] = []
    for i, a in enumerate(argv):
        if a == name:
            j = i + 1
            while j < len(argv) and not argv[j].startswith("--"):
                out.append(argv[j])
                j += 1
        elif a.startswith(name + "="):
            out.append(a.split("=", 1)[1])
    return out


def check_config_args(cfg: Any, argv: list[str], own: set[str]) -> tuple[str, ...]:
    """The nested config options in ``argv`` name fields of ``cfg`` and carry values of their types (checked
    before tyro parses, so a typo or a bad value is one line naming the option, and no capture is read).

    Returns:
        The dotted keys of ``cfg`` the options name, in order.

    Raises:
        InputError: naming the option.
    """
    from nerfhead.cli.checks import check_overrides
    from nerfhead.errors import InputError

    top = {f.name for f in dataclasses.fields(cfg)}
    given: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if not a.startswith("--") or a in ("--help",):
            continue
        flag, _, inline = a.partition("=")
        key = flag[2:].replace("-", "_")
        if key in own or key.removeprefix("no_") in own:
            continue
        if "." not in key and key not in top and key.removeprefix("no_") not in top:
            raise InputError(flag, "unknown option", hint="nerfhead fit --help lists them")
        head, _, last = key.rpartition(".")
        node = cfg
        for part in head.split(".") if head else []:
            node = getattr(node, part, None)
        field = getattr(node, last, None) if dataclasses.is_dataclass(node) else None
        if isinstance(field, bool) or (
            last.startswith("no_") and isinstance(getattr(node, last[3:], None), bool)
        ):
            name = last[3:] if not isinstance(field, bool) else last
            check_overrides(cfg, {f"{head}.{name}" if head else name: True}, option=flag)
            given.append(f"{head}.{name}" if head else name)
            continue
        values = [inline] if inline else []
        while not inline and i < len(argv) and not argv[i].startswith("--"):
            values.append(argv[i])
            i += 1
        if not values:
            raise InputError(flag, "needs a value")
        parsed = [_json_or_text(v) for v in values]
        value = (
            tuple(parsed) if isinstance(field, tuple) else parsed[0] if len(parsed) == 1 else tuple(parsed)
        )
        check_overrides(cfg, {key: value}, option=flag)
        given.append(key)
    return tuple(dict.fromkeys(given))


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def for_args(argv: list[str]) -> Any:
    """:func:`main` for this command line: ``--model``'s fit config as nested options, ``--preset``'s values as
    their defaults, checked before parsing (:func:`check_config_args`).

    Raises:
        InputError: an unknown model or preset, or a bad config option.
    """
    import types
    import typing

    from nerfhead.cli.checks import check_overrides
    from nerfhead.models.registry import get

    kind = get(_flag(argv, "--model", "splat"))
    base = kind.preset(_flag(argv, "--preset", "default"))
    own = {n for n in typing.get_type_hints(main) if n not in ("config", "given", "return")} | {"set"}
    given: tuple[str, ...] = ()
    if "-h" not in argv and "--help" not in argv:
        given = check_config_args(base, argv, own)
        check_overrides(base, parse_overrides(_values(argv, "--set")))
    assert main.__defaults__ is not None
    defaults = main.__defaults__[:-2] + (given, base)
    fn = types.FunctionType(main.__code__, main.__globals__, "main", defaults)
    fn.__doc__ = main.__doc__
    fn.__module__ = main.__module__
    fn.__annotations__ = {
        **typing.get_type_hints(main, include_extras=True),
        "config": Annotated[kind.fit_config, tyro.conf.arg(name="")],
    }
    return fn
