"""The one speech policy (nerfhead.audio.speech): loudness-invariant drives, calibration into the person's
expression distribution, pose composition, and one drive for `nerfhead drive` and the viewer."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from nerfhead.assets import asset_path
from nerfhead.audio.speech import (
    MOUTH_COLUMNS,
    Calibration,
    CalibrationConfig,
    PersonData,
    Speech,
    SpeechConfig,
    best_lag,
    check_config,
    leave_one_block_out,
    prior_path,
    shifted_waveform,
)
from nerfhead.data.drive import Drive
from nerfhead.data.expressions import EXPRESSION_INDEX
from nerfhead.errors import InputError
from nerfhead.media.audio import load_audio

JAW = EXPRESSION_INDEX["jawOpen"]
FUNNEL = EXPRESSION_INDEX["mouthFunnel"]
SR, FPS = 16000, 25.0


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return load_audio(asset_path("audio/fleurs_en-001.ogg"), SR)[0][: 4 * SR]


def _dbfs_peak(w: np.ndarray) -> float:
    return float(20 * np.log10(np.abs(w).max()))


def test_a_quiet_clip_drives_like_the_same_clip_normalised(clip):
    loud = clip / np.abs(clip).max()  # peak 0 dBFS
    quiet = (loud * 10 ** (-48 / 20)).astype(np.float32)  # speech peaking at -48 dBFS
    assert _dbfs_peak(quiet) == pytest.approx(-48.0, abs=0.01)
    speech = Speech(prior_path())
    a, b = speech.drive(loud, SR, FPS), speech.drive(quiet, SR, FPS)
    torch.testing.assert_close(a.expression, b.expression, atol=1e-4, rtol=0)
    assert float(a.expression[:, JAW].std()) > 0.05  # it talks
    # the case that must fail: without the normalisation the quiet clip barely moves the mouth
    raw = Speech(prior_path(), cfg=SpeechConfig(normalise=False))
    ra, rb = raw.drive(loud, SR, FPS), raw.drive(quiet, SR, FPS)
    assert float(rb.expression[:, JAW].std()) < 0.5 * float(ra.expression[:, JAW].std())


def _person(tmp_path, clip, drive: Drive, train) -> PersonData:
    wav = tmp_path / "capture.wav"
    soundfile.write(wav, clip, SR, subtype="FLOAT")
    return PersonData(drive, wav, torch.arange(len(drive), dtype=torch.float64) / FPS, 0.0, tuple(train))


def test_calibration_maps_the_prior_into_the_persons_range(tmp_path, clip):
    """A person whose jaw opens half as far as the prior predicts, with a resting offset, and who never funnels:
    the calibrated drive matches them on frames the calibration did not see; the raw prior does not."""
    raw = Speech(prior_path()).drive(clip, SR, FPS)
    T = len(raw)
    tracked = Drive.neutral(T, FPS)
    tracked.expression[:, JAW] = 0.05 + 0.5 * raw.expression[:, JAW]
    train = [t for t in range(T) if t % 10 < 7]
    test = [t for t in range(T) if t % 10 >= 7]
    speech = Speech(prior_path(), _person(tmp_path, clip, tracked, train))
    cal = speech.calibration()
    assert cal is not None and cal.mouth_basis.shape[1] == 1  # one mouth mode used: the jaw
    got = speech.drive(clip, SR, FPS)
    err_cal = (got.expression[test, JAW] - tracked.expression[test, JAW]).abs().mean()
    err_raw = (raw.expression[test, JAW] - tracked.expression[test, JAW]).abs().mean()
    assert float(err_cal) < 0.01 and float(err_raw) > 5 * float(err_cal)
    assert float(got.expression[:, FUNNEL].abs().max()) < 1e-6  # outside the capture's mouth subspace
    assert float(raw.expression[:, FUNNEL].max()) > 0.02  # (the prior does funnel)
    hi = float(tracked.expression[:, JAW].max())
    assert float(got.expression[:, JAW].max()) <= hi + 0.1 * hi + 1e-6  # inside the range the fit saw
    # calibration fitted on the training frames only: a person whose held-out frames differ gives the same one
    moved = Drive.neutral(T, FPS)
    moved.expression[:] = tracked.expression
    moved.expression[test, JAW] = 0.9
    other = Speech(prior_path(), _person(tmp_path, clip, moved, train)).calibration()
    assert other is not None and torch.equal(other.scale, cal.scale) and torch.equal(other.shift, cal.shift)


def test_calibration_finds_the_audio_visual_lag(tmp_path, clip):
    """A person whose mouth follows the prior's 0.08 s later in the audio (an offset, or a speaker ahead of the
    sound): the lag found on the training frames is 0.08 s and the held-out jaw matches; without the lag
    search it does not."""
    fine = Speech(prior_path()).raw(clip, 2 * FPS).expression  # frame k at audio time k / 50
    T = (len(fine) - 8) // 2
    tracked = Drive.neutral(T, FPS)
    tracked.expression[:, JAW] = 0.05 + 0.5 * fine[2 * torch.arange(T) + 4, JAW]  # audio time t / 25 + 0.08
    train = [t for t in range(T) if t % 10 < 7]
    test = [t for t in range(T) if t % 10 >= 7]
    person = _person(tmp_path, clip, tracked, train)
    speech = Speech(prior_path(), person)
    cal = speech.calibration()
    assert cal is not None and cal.lag_s == pytest.approx(0.08)
    err = (speech.drive(clip, SR, FPS).expression[test, JAW] - tracked.expression[test, JAW]).abs().mean()
    # the case that must fail: no lag search
    still = Speech(prior_path(), person, SpeechConfig(calibration=CalibrationConfig.of(lag=False)))
    assert still.calibration().lag_s == 0.0  # type: ignore[union-attr]
    err0 = (still.drive(clip, SR, FPS).expression[test, JAW] - tracked.expression[test, JAW]).abs().mean()
    assert float(err) < 0.01 and float(err0) > 3 * float(err)


def test_training_frames_are_what_the_calibration_fits(tmp_path, clip):
    fine = Speech(prior_path()).raw(clip, 2 * FPS).expression
    T = (len(fine) - 8) // 2
    tracked = Drive.neutral(T, FPS)
    tracked.expression[:, JAW] = 0.05 + 0.5 * fine[2 * torch.arange(T) + 4, JAW]
    train = [t for t in range(T) if t % 10 < 7]
    speech = Speech(prior_path(), _person(tmp_path, clip, tracked, train))
    frames = speech.training_frames()
    assert frames is not None and frames.timesteps == tuple(train) and frames.lag_s == pytest.approx(0.08)
    torch.testing.assert_close(frames.tracked, tracked.expression[train])
    torch.testing.assert_close(frames.pred[:, JAW], fine[2 * torch.tensor(train) + 4, JAW], atol=1e-6, rtol=0)
    cal = speech.calibration()
    assert cal is not None and torch.equal(cal.scale, Calibration.fit(frames.pred, frames.tracked).scale)
    off = Speech(prior_path(), speech.person, SpeechConfig(calibration=CalibrationConfig(enabled=False)))
    assert off.training_frames() is None and off.calibration() is None


def test_leave_one_block_out_picks_the_true_map_and_not_a_memoriser():
    """A synthetic capture whose mouth is a known affine map of the driver's plus a slow part no audio explains:
    the cross-validation on training frames prefers the affine fit to a still mouth and to a memoriser (the
    tracked value of the nearest fitted timestep). The case that must fail: leave-one-frame-out with no gap,
    where neighbouring frames leak, ranks the memoriser first."""
    g = torch.Generator().manual_seed(0)
    T = 120
    t = torch.arange(T, dtype=torch.float64)
    x = 0.5 + 0.4 * torch.sin(t / 8.0)  # the driver's mouth opening
    y = 0.1 + 2.0 * (x - 0.5) + 0.2 * torch.sin(t / 5.0 + 1.0)
    y = y + 0.01 * torch.randn(T, generator=g, dtype=torch.float64)
    train = [i for i in range(T) if i % 40 < 30]

    def affine(fit: list[int], at: list[int]) -> torch.Tensor:
        a = torch.stack([torch.ones(len(fit), dtype=x.dtype), x[fit]], 1)
        c = torch.linalg.lstsq(a, y[fit, None]).solution[:, 0]
        return c[0] + c[1] * x[at]

    def still(fit: list[int], at: list[int]) -> torch.Tensor:
        return y[fit].mean().expand(len(at))

    def memoriser(fit: list[int], at: list[int]) -> torch.Tensor:
        f = torch.tensor(fit)
        return y[f[(f[None] - torch.tensor(at)[:, None]).abs().argmin(1)]]

    def score(pred: torch.Tensor, at: list[int]) -> torch.Tensor:
        return (pred - y[at]).abs()

    cv = {f.__name__: leave_one_block_out(train, f, score) for f in (affine, still, memoriser)}
    assert min(cv, key=cv.__getitem__) == "affine"
    assert cv["affine"] < 0.17 and cv["memoriser"] > 1.5 * cv["affine"] and cv["still"] > 3 * cv["affine"]
    leaky = {f.__name__: leave_one_block_out(train, f, score, block=1, gap=0) for f in (affine, memoriser)}
    assert leaky["memoriser"] < 0.6 * leaky["affine"]
    # only the kept frames are scored; a run with nothing kept is skipped, none scored gives nan
    kept = leave_one_block_out(
        train, still, lambda p, at: torch.tensor([float(i) for i in at]), keep=lambda i: i == 5
    )
    assert kept == 5.0
    assert np.isnan(leave_one_block_out(train, still, score, keep=lambda i: False))


def test_best_lag_ties_and_flat_signals():
    y = torch.tensor([0.0, 1.0, 0.0, 1.0])
    # equal correlations: the first of the smallest |lag|
    assert best_lag(torch.stack([y, y, 1 - y]), y, [-0.02, 0.02, 0.0]) == -0.02
    assert best_lag(torch.stack([y, 1 - y, y]), y, [0.04, 0.0, -0.02]) == -0.02
    assert best_lag(torch.ones(3, 4), y, [-0.02, 0.0, 0.02]) == 0.0  # a flat prediction: no lag


def test_shifted_waveform_reads_the_audio_later_or_earlier():
    w = np.arange(1, 9, dtype=np.float32)
    assert shifted_waveform(w, 0.0) is w
    np.testing.assert_array_equal(shifted_waveform(w, 2 / SR), [3, 4, 5, 6, 7, 8, 0, 0])
    np.testing.assert_array_equal(shifted_waveform(w, -3 / SR), [0, 0, 0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(shifted_waveform(w, 1.0), np.zeros(8))  # past the end: silence
    np.testing.assert_array_equal(
        shifted_waveform(w, -1.0), np.zeros(8)
    )  # before the start: silence, same length
    assert not np.array_equal(shifted_waveform(w, 1 / SR), w)  # must fail: a shift that changes nothing


def test_calibration_fit_recovers_an_affine_map():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(200, 53, generator=g)
    y = (0.2 + 0.5 * p).clamp(0, 1)
    cal = Calibration.fit(p, y)
    torch.testing.assert_close(cal.scale, torch.full((53,), 0.5), atol=0.01, rtol=0)
    assert len(MOUTH_COLUMNS) >= cal.mouth_basis.shape[1] > 1
    with pytest.raises(ValueError, match="matching"):
        Calibration.fit(p[:1], y[:1])


def test_pose_hold_and_tracked(tmp_path, clip):
    T = 40
    base = Drive.neutral(T, FPS)
    base.rotation[:, 1] = torch.linspace(-0.2, 0.2, T)
    base.translation[:, 2] = torch.linspace(0.0, 0.04, T)
    person = PersonData(base, None, torch.arange(T, dtype=torch.float64) / FPS)
    held = Speech(None, person).drive(clip[:SR], SR, FPS)
    assert torch.allclose(held.rotation, base.rotation[:1].expand(len(held), 3), atol=1e-6)
    torch.testing.assert_close(held.translation[0], base.translation.mean(0))
    tracked = Speech(None, person, SpeechConfig(pose="tracked")).drive(clip[:SR], SR, FPS)
    torch.testing.assert_close(tracked.rotation, base.rotation[: len(tracked)])
    torch.testing.assert_close(tracked.translation, base.translation[: len(tracked)])
    with pytest.raises(InputError, match="hold or tracked"):
        check_config(SpeechConfig(pose="free"))  # type: ignore[arg-type]
