"""Checkpoints: exact round trip of model and optimizer state, atomicity, resume pointer."""

from __future__ import annotations

import torch

from nerfhead.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint


def _model_and_opt():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        m(torch.randn(16, 4)).square().mean().backward()
        opt.step()
    return m, opt


def test_round_trip_exact(tmp_path):
    m, opt = _model_and_opt()
    save_checkpoint(tmp_path, 3, m.state_dict(), {"adam": opt.state_dict()}, extra={"lr_scale": 0.5})
    latest = latest_checkpoint(tmp_path)
    assert latest is not None
    ck = load_checkpoint(latest)
    assert ck["step"] == 3 and ck["extra"] == {"lr_scale": 0.5}
    for k, v in m.state_dict().items():
        assert torch.equal(ck["model"][k], v)
    m2, _ = _model_and_opt()
    m2.load_state_dict(ck["model"])
    opt2 = torch.optim.Adam(m2.parameters(), lr=1e-2)
    opt2.load_state_dict(ck["optimizers"]["adam"])
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for pid in s1["state"]:
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(s1["state"][pid][k], s2["state"][pid][k])
    assert torch.equal(ck["rng"], torch.get_rng_state())


def test_partial_write_is_ignored_and_old_kept(tmp_path):
    m, opt = _model_and_opt()
    save_checkpoint(tmp_path, 1, m.state_dict(), {"adam": opt.state_dict()})
    # a kill mid-write leaves a temp folder behind: it must not be picked up
    (tmp_path / "checkpoints" / ".step_000002.xyz").mkdir()
    (tmp_path / "checkpoints" / ".step_000002.xyz" / "model.safetensors").write_bytes(b"garbage")
    assert getattr(latest_checkpoint(tmp_path), "name", None) == "step_000001"
    save_checkpoint(tmp_path, 2, m.state_dict(), keep=1)
    save_checkpoint(tmp_path, 3, m.state_dict(), keep=1)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert names == ["step_000003"]
    assert getattr(latest_checkpoint(tmp_path), "name", None) == "step_000003"


def test_missing_checkpoint_file_is_input_error(tmp_path):
    import pytest

    from nerfhead.errors import InputError

    (tmp_path / "step_000001").mkdir()
    with pytest.raises(InputError, match="missing checkpoint file"):
        load_checkpoint(tmp_path / "step_000001")
