"""``nerfhead doctor``: versions, usable backends and where the bundled assets are."""

from __future__ import annotations

import importlib
import json
import platform
import sys
from typing import Annotated, Any

import tyro


def _version(mod: str) -> str | None:
    try:
        m = importlib.import_module(mod)
    except Exception:
        return None
    return str(getattr(m, "__version__", "unknown"))


def _dist_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def report() -> dict[str, Any]:
    """Everything ``doctor`` knows, as a JSON-able dict."""
    import torch

    import nerfhead
    from nerfhead import _backend
    from nerfhead.assets import asset_report

    ext = _backend.get_ext()
    cuda_dev = torch.cuda.is_available()
    gsplat_v = _dist_version("gsplat")
    return {
        "nerfhead": nerfhead.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "numpy": _dist_version("numpy"),
            "gsplat": gsplat_v,
            "viser": _dist_version("viser"),
            "mediapipe": _dist_version("mediapipe"),
            "tinycudann": _dist_version("tinycudann"),
            "pytorch3d": _dist_version("pytorch3d"),
            "trimesh": _dist_version("trimesh"),
            "av": _dist_version("av"),
        },
        "backends": {
            "torch_twin": True,
            "cpu_kernels": ext is not None,
            "cuda_kernels": bool(ext is not None and getattr(ext, "with_cuda", False)),
            "gsplat": bool(gsplat_v is not None and cuda_dev),
            "cuda_device": torch.cuda.get_device_name(0) if cuda_dev else None,
        },
        "cpu_kernels": ext is not None,
        "extension": getattr(ext, "__file__", None),
        "extension_error": None if ext is not None else _backend.load_error(),
        "ops": sorted(n for n in dir(ext) if n.endswith("_forward")) if ext is not None else [],
        "threads": torch.get_num_threads(),
        "assets": asset_report(),
        "executable": sys.executable,
    }


def main(json_out: Annotated[bool, tyro.conf.arg(name="json")] = False) -> None:
    """Print versions, usable backends (torch twin, compiled CPU/CUDA kernels, gsplat, CUDA device) and assets.

    Args:
        json_out: print machine-readable JSON instead of a table.
    """
    r = report()
    if json_out:
        print(json.dumps(r, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"nerfhead {r['nerfhead']} (python {r['python']})", show_header=True)
    t.add_column("item")
    t.add_column("value")
    for k, v in r["versions"].items():
        t.add_row(k, str(v) if v is not None else "[dim]not installed[/dim]")
    for k, v in r["backends"].items():
        t.add_row(
            f"backend: {k}", "[green]yes[/green]" if v is True else ("[red]no[/red]" if not v else str(v))
        )
    t.add_row("extension", str(r["extension"] or r["extension_error"]))
    t.add_row("assets", r["assets"]["root"])
    for name, ok in r["assets"]["files"].items():
        t.add_row(f"  {name}", "[green]present[/green]" if ok else "[red]missing[/red]")
    Console().print(t)
