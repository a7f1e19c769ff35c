"""Occupancy grid: bitfield layout, EMA updates against a known density (a sphere), and marching that skips empty
space, for one and several cascades."""

from __future__ import annotations

import math

import pytest
import torch

from nerfhead._backend import has_cpu_kernels
from nerfhead.components.occupancy_grid import OccupancyGrid, OccupancyGridConfig
from nerfhead.errors import InputError
from nerfhead.ops.ray_march import MarchConfig

COMPILED_CPU = pytest.param(
    "cpu", marks=pytest.mark.skipif(not has_cpu_kernels(), reason="nerfhead._C (C++ CPU kernels) not built")
)
BACKENDS = ["torch", COMPILED_CPU]


def sphere(center=(0.0, 0.0, 0.0), radius=0.5, density=10.0):
    c = torch.tensor(center)
    return lambda x: density * ((x - c).norm(dim=-1) < radius).float()


def cell_centres(grid: OccupancyGrid, cascade: int) -> torch.Tensor:
    r = grid.resolution
    box = grid.cascade_aabb(cascade)
    lin = (torch.arange(r) + 0.5) / r
    i, j, k = torch.meshgrid(lin, lin, lin, indexing="ij")
    return box[:3] + torch.stack([i, j, k], -1) * (box[3:] - box[:3])  # [R, R, R, 3]


def test_config_rejects_bad_values():
    with pytest.raises(InputError, match="even"):
        OccupancyGridConfig(resolution=15)
    with pytest.raises(InputError, match="aabb"):
        OccupancyGridConfig(aabb=(0.0, 0.0, 0.0, 1.0, -1.0, 1.0))
    with pytest.raises(InputError, match="n_cascades"):
        OccupancyGridConfig(n_cascades=0)


def test_bitfield_layout_and_lookup():
    grid = OccupancyGrid(OccupancyGridConfig(resolution=8, n_cascades=2))
    assert grid.bitfield.shape == (2 * 8**3 // 8,) and bool(grid.binary.all())  # new grids are all occupied
    binary = torch.zeros(2, 8, 8, 8, dtype=torch.bool)
    binary[0, 1, 2, 3] = True
    binary[1, 7, 0, 4] = True
    grid.set_binary(binary)
    assert torch.equal(grid.binary, binary)
    for c, i, j, k in [(0, 1, 2, 3), (1, 7, 0, 4)]:
        n = c * 512 + (i * 8 + j) * 8 + k
        assert int(grid.bitfield[n >> 3]) == 1 << (n & 7)
    centres0, centres1 = cell_centres(grid, 0), cell_centres(grid, 1)
    pts = torch.stack(
        [centres0[1, 2, 3], centres0[1, 2, 4], centres1[7, 0, 4], centres1[0, 0, 0], torch.full((3,), 2.5)]
    )
    # Cascade 1 cell (7, 0, 4) spans x in [1.5, 2]: outside cascade 0, so cascade 1 is looked up.
    assert grid.is_occupied(pts).tolist() == [True, False, True, False, False]
    grid.mark_all()
    assert bool(grid.binary.all())


def test_warmup_update_matches_sphere():
    cfg = OccupancyGridConfig(resolution=32, threshold=0.01)
    grid = OccupancyGrid(cfg)
    assert grid.update(0, sphere(), generator=torch.Generator().manual_seed(0))
    assert not grid.update(3, sphere())  # not an update step
    dist = cell_centres(grid, 0).norm(dim=-1)
    half_diag = math.sqrt(3) / 32  # half the diagonal of a cell (cell size 2/32)
    inside, outside = dist < 0.5 - half_diag, dist > 0.5 + half_diag
    occupied = grid.binary[0]
    assert bool(occupied[inside].all()) and not bool(occupied[outside].any())
    shell = ~inside & ~outside
    assert 0.1 < float(occupied[shell].float().mean()) < 0.9  # boundary cells: some hit the sphere, some not


def test_ema_decays_and_takes_the_max():
    cfg = OccupancyGridConfig(resolution=8, ema_decay=0.5, warmup_steps=10**6, update_every=1)
    grid = OccupancyGrid(cfg)
    grid.update(0, lambda x: torch.full(x.shape[:1], 4.0))
    assert torch.equal(grid.density, torch.full_like(grid.density, 4.0))
    for step in range(1, 4):
        grid.update(step, lambda x: torch.full(x.shape[:1], 0.3))
    assert torch.equal(grid.density, torch.full_like(grid.density, 0.5))  # max(4 * 0.5^3, 0.3)
    grid.update(4, lambda x: torch.full(x.shape[:1], 0.3))
    assert torch.equal(grid.density, torch.full_like(grid.density, 0.3))


def test_post_warmup_updates_follow_a_moving_sphere():
    cfg = OccupancyGridConfig(
        resolution=16, ema_decay=0.5, warmup_steps=1, update_every=1, cells_fraction=0.25
    )
    grid = OccupancyGrid(cfg)
    gen = torch.Generator().manual_seed(1)
    grid.update(0, sphere((-0.4, 0.0, 0.0), 0.3), generator=gen)
    for step in range(1, 40):
        grid.update(step, sphere((0.4, 0.0, 0.0), 0.3), generator=gen)
    centres = cell_centres(grid, 0)
    half_diag = math.sqrt(3) / 16
    new_in = (centres - torch.tensor([0.4, 0.0, 0.0])).norm(dim=-1) < 0.3 - half_diag
    old_in = (centres - torch.tensor([-0.4, 0.0, 0.0])).norm(dim=-1) < 0.3 - half_diag
    assert bool(grid.binary[0][new_in].all()) and not bool(grid.binary[0][old_in].any())


@pytest.mark.parametrize("backend", BACKENDS)
def test_marching_skips_empty_space(backend):
    grid = OccupancyGrid(OccupancyGridConfig(resolution=32))
    grid.update(0, sphere(), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(2)
    n = 400
    o = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * 3.0
    target = (torch.rand(n, 3, generator=g) * 2 - 1) * 0.7
    d = torch.nn.functional.normalize(target - o, dim=-1)
    step = 0.01
    s = grid.sample(o, d, cfg=MarchConfig(step_size=step), backend=backend)
    mid = o[s.ray_indices] + ((s.t_starts + s.t_ends) / 2)[:, None] * d[s.ray_indices]
    assert bool(grid.is_occupied(mid).all())
    assert float(mid.norm(dim=-1).max()) < 0.5 + 2 * math.sqrt(3) / 32  # nothing beyond the sphere's cells
    # Rays miss the sphere's cells get nothing; rays through it sample at least the chord through the ball of
    # cells that lie wholly inside the sphere (radius 0.5 - cell diagonal), which are surely occupied.
    closest = torch.linalg.cross(o, d).norm(dim=-1)  # distance of the line from the centre
    count = s.packed_info[:, 1]
    assert bool((count[closest > 0.5 + math.sqrt(3) * 2 / 32] == 0).all())
    core = 0.5 - math.sqrt(3) * 2 / 32
    hit = closest < core - 0.02
    chord = 2 * (core**2 - closest[hit] ** 2).sqrt()
    assert int(hit.sum()) > 50 and bool((count[hit].float() * step >= chord - 2 * step).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_cascades_reach_the_background(backend):
    """A shell outside the base box is found by cascade 1 and sampled; the base box's empty inside is skipped."""
    grid = OccupancyGrid(OccupancyGridConfig(resolution=16, n_cascades=2))

    def shell(x):
        r = x.norm(dim=-1)
        return 10.0 * ((r > 1.75) & (r < 2.5)).float()  # beyond the base box's corners (r = sqrt(3))

    grid.update(0, shell, generator=torch.Generator().manual_seed(0))
    assert not bool(grid.binary[0].any()) and bool(grid.binary[1].any())
    o = torch.zeros(64, 3)
    d = torch.nn.functional.normalize(torch.randn(64, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    s = grid.sample(o, d, cfg=MarchConfig(step_size=0.01, cone_angle=1 / 256), backend=backend)
    assert bool((s.packed_info[:, 1] > 0).all())
    r = (s.t_starts + s.t_ends) / 2
    assert float(r.min()) > 1.75 - 0.45  # within a cascade-1 cell diagonal of the shell


def test_state_dict_round_trip():
    cfg = OccupancyGridConfig(resolution=8, n_cascades=2)
    a = OccupancyGrid(cfg)
    a.update(0, sphere(radius=0.7))
    b = OccupancyGrid(cfg)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.bitfield, b.bitfield) and torch.equal(a.density, b.density)
    assert set(a.state_dict()) == {"density", "bitfield"}
