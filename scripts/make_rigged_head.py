"""Regenerate scenes/assets/rigged_head: fit ICT-FaceKit to the LeePerrySmith scan and bake its colours.

    .venv/bin/python scripts/make_rigged_head.py            # about 1-2 minutes on 2 CPU cores

Writes rigged_head.npz + albedo.png (the asset), preview.png (scan | neutral | jawOpen | smile | blink, front
and three-quarter views, orthographic, textured with light shading) and prints the fit metrics as JSON.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import tyro

from nerfhead.assets import asset_path
from nerfhead.parametric.bake import bake_texture, bake_vertex_colors, rasterize_2d
from nerfhead.parametric.fit_scan import ScanFit, ScanFitConfig, fit_metrics, fit_scan, vertex_normals
from nerfhead.parametric.ict import ICTHead
from nerfhead.parametric.rigged import load_rigged_head, save_rigged_head
from nerfhead.parametric.scan import Scan, load_scan, sample_image


@dataclass(frozen=True)
class Args:
    out: Path = asset_path("rigged_head")
    """Output folder of the asset."""
    preview: Path | None = None
    """Preview PNG (default: OUT/preview.png)."""
    atlas_size: int = 1024
    """Texture edge in texels."""
    panel: int = 256
    """Preview panel size in pixels."""
    reuse_fit: bool = False
    """Take the shape and scan similarity from the existing OUT/rigged_head.npz; only re-bake the colours."""
    fit: ScanFitConfig = ScanFitConfig()


def _render(verts: np.ndarray, faces: np.ndarray, color_fn, size: int, yaw_deg: float, frame) -> np.ndarray:
    """Orthographic textured render [size, size, 3] looking down -z after a yaw; ``frame`` = (centre, half)."""
    a = np.deg2rad(yaw_deg)
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    v = (verts - frame[0]) @ R.T
    px = np.stack([(v[:, 0] / frame[1] + 1) * size / 2, (1 - v[:, 1] / frame[1]) * size / 2], 1)
    pix, fid, bary = rasterize_2d(px[faces], size, size, depth=-v[faces][..., 2])
    n = vertex_normals(v, faces)
    nrm = (bary[:, :, None] * n[faces[fid]]).sum(1)
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    light = np.array([0.3, 0.4, 1.0]) / np.linalg.norm([0.3, 0.4, 1.0])
    shade = 0.55 + 0.45 * np.clip(np.abs(nrm @ light), 0, 1)
    img = np.ones((size * size, 3), np.float32)
    img[pix] = np.clip(color_fn(fid, bary) * shade[:, None], 0, 1)
    return img.reshape(size, size, 3)


def _scan_colors(scan: Scan, faces: np.ndarray):
    def fn(fid: np.ndarray, bary: np.ndarray) -> np.ndarray:
        uv = (bary[:, :, None] * scan.uv[faces[fid]]).sum(1)
        H, W = scan.albedo.shape[:2]
        return sample_image(scan.albedo, uv[:, 0] * W, uv[:, 1] * H)

    return fn


def _atlas_colors(uv: np.ndarray, faces_uv: np.ndarray, tex: np.ndarray):
    def fn(fid: np.ndarray, bary: np.ndarray) -> np.ndarray:
        t = (bary[:, :, None] * uv[faces_uv[fid]]).sum(1)
        S = tex.shape[0]
        return sample_image(tex, t[:, 0] * S, (1 - t[:, 1]) * S)

    return fn


def preview(scan: Scan, scan_canonical: np.ndarray, rig, size: int) -> np.ndarray:
    """Rows: front, 35 degrees yaw. Columns: scan, neutral, jawOpen, smile, blink."""
    names = rig.expression_names
    poses = {"neutral": {}, "jawOpen": {"jawOpen": 1.0}, "smile": {"mouthSmile_L": 1.0, "mouthSmile_R": 1.0}}
    poses["blink"] = {"eyeBlink_L": 1.0, "eyeBlink_R": 1.0}
    expr = torch.zeros(len(poses), len(names))
    for i, p in enumerate(poses.values()):
        for k, val in p.items():
            expr[i, names.index(k)] = val
    with torch.no_grad():
        verts = rig(expr, torch.zeros(len(poses), 3), torch.zeros(len(poses), 3)).vertices.double().numpy()
    faces = rig.faces[rig.head.render_face_mask].numpy()
    fuv = rig.faces_uv[rig.head.render_face_mask].numpy()
    colors = _atlas_colors(rig.uv.numpy(), fuv, rig.texture.numpy())
    skin = verts[0][rig.head.skin_mask.numpy()]
    keep_scan = (scan_canonical[:, 1] > skin[:, 1].min()) & (scan_canonical[:, 1] < skin[:, 1].max() + 0.01)
    scan_faces = scan.faces[keep_scan[scan.faces].all(1)]
    centre = np.array([0.0, skin[:, 1].min() / 2 + skin[:, 1].max() / 2, 0.0])
    frame = (centre, 0.55 * (skin[:, 1].max() - skin[:, 1].min()))
    rows = []
    for yaw in (0.0, 35.0):
        panels = [_render(scan_canonical, scan_faces, _scan_colors(scan, scan_faces), size, yaw, frame)]
        panels += [_render(v, faces, colors, size, yaw, frame) for v in verts]
        rows.append(np.concatenate(panels, 1))
    return np.concatenate(rows, 0)


def _stored_fit(head: ICTHead, scan: Scan, folder: Path) -> ScanFit:
    with np.load(folder / "rigged_head.npz", allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    fit = ScanFit(
        float(d["scan_scale"]),
        d["scan_rotation"],
        d["scan_translation"],
        d["identity"].astype(np.float64),
        d["scan_expression"].astype(np.float64),
        d["offsets"].astype(np.float64),
    )
    with torch.no_grad():
        fitted = (
            head.canonical(
                torch.as_tensor(fit.expression[None], dtype=torch.float32),
                torch.as_tensor(fit.identity, dtype=torch.float32),
            )[0]
            .double()
            .numpy()
            + fit.offsets
        )
    metrics = fit_metrics(fitted, head, fit.scan_to_canonical(scan.vertices), scan.faces)
    metrics["scan_scale_m_per_unit"] = fit.scan_scale
    return replace(fit, metrics=metrics)


def main(args: Args) -> dict:
    import imageio.v3 as iio

    torch.set_num_threads(2)
    t0 = time.time()
    head = ICTHead()
    scan = load_scan(
        asset_path("head_scan_leeperrysmith/LeePerrySmith.glb"),
        asset_path("head_scan_leeperrysmith/Map-COL.jpg"),
    )
    fit = _stored_fit(head, scan, args.out) if args.reuse_fit else fit_scan(head, scan, args.fit, log=True)
    t_fit = time.time() - t0
    R = fit.rotation_matrix()
    with torch.no_grad():
        expressed = (
            head.canonical(
                torch.as_tensor(fit.expression[None], dtype=torch.float32),
                torch.as_tensor(fit.identity, dtype=torch.float32),
            )[0]
            .double()
            .numpy()
        )
    fitted = expressed + fit.offsets  # coincides with the scan
    colors = bake_vertex_colors(head, fitted, scan, fit.scan_scale, R, fit.scan_translation)
    texture = bake_texture(
        head, fitted, colors, scan, fit.scan_scale, R, fit.scan_translation, args.atlas_size
    )
    arrays = {
        "identity": fit.identity,
        "offsets": fit.offsets,
        "scan_scale": fit.scan_scale,
        "scan_rotation": fit.scan_rotation,
        "scan_translation": fit.scan_translation,
        "scan_expression": fit.expression,
    }
    rig_neutral = head.canonical(
        None,
        torch.as_tensor(fit.identity, dtype=torch.float32),
        torch.as_tensor(fit.offsets, dtype=torch.float32),
    )[0].numpy()
    skin = rig_neutral[head.skin_mask.numpy()]
    lm = rig_neutral[head.landmark_idx.numpy()]
    metrics = dict(fit.metrics)
    metrics["head_crown_to_chin_m"] = float(skin[:, 1].max() - lm[8, 1])
    metrics["head_width_m"] = float(np.ptp(rig_neutral[head.face_mask.numpy()][:, 0]))
    metrics["fit_seconds"] = round(t_fit, 1)
    save_rigged_head(args.out, arrays, colors, texture, metrics)
    print(f"baked in {time.time() - t0:.1f} s")

    rig = load_rigged_head(args.out)  # preview what was written (float16 offsets, 8-bit colours)
    img = preview(scan, fit.scan_to_canonical(scan.vertices), rig, args.panel)
    out_png = args.preview or args.out / "preview.png"
    iio.imwrite(out_png, np.round(img * 255).astype(np.uint8), optimize=True)
    sizes = {p.name: p.stat().st_size for p in sorted(Path(args.out).iterdir()) if p.is_file()}
    report = {"metrics": metrics, "files_bytes": sizes, "preview": str(out_png)}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main(tyro.cli(Args))
