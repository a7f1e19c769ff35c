"""Speech to mouth shapes by rule: phonemes → visemes → ICT/ARKit curves, and a phoneme-free energy fallback.

Two rule sets produce ``[F, 53]`` expression curves at the feature rate (100 per second, in
:data:`~nerfhead.data.expressions.EXPRESSION_NAMES` order):

* **Energy rules** (any language, streamable): per-frame descriptors of the log-mel frames (speech-band level
  against a causal peak-tracking reference, high-band frication, spectral brightness), then windowed rules
  (jaw follows the voiced level, lips round on dark spectra and spread on bright ones, lips press on a quiet gap
  inside speech that a burst follows, teeth show on frication, brows lift with sustained speech) and an
  asymmetric smoothing kernel that looks further ahead than back (the mouth anticipates the sound). Every
  windowed step uses a fixed context, so :func:`energy_curves_valid` gives the same numbers offline and
  streaming.
* **Phoneme rules**: ARPAbet phones (e.g. from pocketsphinx) → 15 visemes (Oculus set) → target shapes blended
  by Cohen-Massaro dominance functions (co-articulation: bilabials dominate, lip rounding spreads ahead).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import numpy as np

from nerfhead.audio.features import LogMelConfig, mel_frequencies
from nerfhead.data.expressions import EXPRESSION_INDEX, NUM_EXPRESSIONS

# ----------------------------------------------------------------------------------------------- shapes


def shape_vector(weights: dict[str, float]) -> np.ndarray:
    """ICT expression vector [53] from ``{name: weight}``; a name without _L/_R sets both sides."""
    v = np.zeros(NUM_EXPRESSIONS, np.float64)
    for name, w in weights.items():
        if name in EXPRESSION_INDEX:
            v[EXPRESSION_INDEX[name]] = w
        else:
            v[EXPRESSION_INDEX[name + "_L"]] = w
            v[EXPRESSION_INDEX[name + "_R"]] = w
    return v


MOUTH_COLUMNS: tuple[int, ...] = tuple(
    i for n, i in EXPRESSION_INDEX.items() if n.startswith(("jaw", "mouth", "cheekPuff"))
)
"""Columns a mouth rule set drives (jaw*, mouth*, cheekPuff*)."""

# Oculus-style viseme set. Values are ICT coefficients of the fully articulated shape.
VISEME_SHAPES: dict[str, dict[str, float]] = {
    "sil": {},
    "PP": {"mouthClose": 0.12, "mouthPress": 0.55, "mouthRollLower": 0.25, "mouthRollUpper": 0.15},
    "FF": {"jawOpen": 0.05, "mouthRollLower": 0.5, "mouthUpperUp": 0.2, "mouthPress": 0.1},
    "TH": {"jawOpen": 0.12, "mouthLowerDown": 0.12, "mouthUpperUp": 0.1},
    "DD": {"jawOpen": 0.12, "mouthStretch": 0.1, "mouthLowerDown": 0.1},
    "kk": {"jawOpen": 0.18, "mouthStretch": 0.1},
    "CH": {
        "jawOpen": 0.08,
        "mouthFunnel": 0.4,
        "mouthPucker": 0.2,
        "mouthUpperUp": 0.2,
        "mouthLowerDown": 0.2,
    },
    "SS": {
        "jawOpen": 0.05,
        "mouthStretch": 0.25,
        "mouthUpperUp": 0.15,
        "mouthLowerDown": 0.15,
        "mouthSmile": 0.1,
    },
    "nn": {"jawOpen": 0.12, "mouthStretch": 0.05},
    "RR": {"jawOpen": 0.12, "mouthFunnel": 0.3, "mouthPucker": 0.2},
    "aa": {"jawOpen": 0.6, "mouthLowerDown": 0.15},
    "E": {"jawOpen": 0.4, "mouthStretch": 0.2, "mouthSmile": 0.1},
    "I": {"jawOpen": 0.2, "mouthStretch": 0.3, "mouthSmile": 0.2},
    "O": {"jawOpen": 0.4, "mouthFunnel": 0.5, "mouthPucker": 0.2},
    "U": {"jawOpen": 0.15, "mouthFunnel": 0.35, "mouthPucker": 0.65},
}
"""Viseme → ICT expression weights (names without _L/_R set both sides)."""

PHONEME_TO_VISEME: dict[str, str] = {
    **dict.fromkeys(["SIL", "+NSN+", "+SPN+", "+BREATH+", "+COUGH+", "+SMACK+", "+UH+", "+UM+"], "sil"),
    **dict.fromkeys(["P", "B", "M"], "PP"),
    **dict.fromkeys(["F", "V"], "FF"),
    **dict.fromkeys(["TH", "DH"], "TH"),
    **dict.fromkeys(["T", "D"], "DD"),
    **dict.fromkeys(["K", "G", "NG", "HH"], "kk"),
    **dict.fromkeys(["CH", "JH", "SH", "ZH"], "CH"),
    **dict.fromkeys(["S", "Z"], "SS"),
    **dict.fromkeys(["N", "L"], "nn"),
    **dict.fromkeys(["R", "ER"], "RR"),
    **dict.fromkeys(["AA", "AH", "AY"], "aa"),
    **dict.fromkeys(["EH", "AE", "EY"], "E"),
    **dict.fromkeys(["IH", "IY", "Y"], "I"),
    **dict.fromkeys(["AO", "OW", "OY", "AW"], "O"),
    **dict.fromkeys(["UW", "UH", "W"], "U"),
}
"""ARPAbet (CMU, as pocketsphinx writes it, stress digits removed) → viseme. Unknown phones count as "sil"."""

# (dominance magnitude, anticipatory time constant s, carry-over time constant s)
VISEME_DOMINANCE: dict[str, tuple[float, float, float]] = {
    "sil": (0.8, 0.05, 0.05),
    "PP": (8.0, 0.02, 0.02),
    "FF": (5.0, 0.025, 0.025),
    "TH": (0.7, 0.04, 0.04),
    "DD": (0.5, 0.04, 0.04),
    "kk": (0.5, 0.04, 0.04),
    "CH": (1.5, 0.06, 0.05),
    "SS": (1.2, 0.05, 0.04),
    "nn": (0.5, 0.04, 0.04),
    "RR": (1.0, 0.08, 0.05),
    "aa": (1.0, 0.07, 0.06),
    "E": (1.0, 0.07, 0.06),
    "I": (1.0, 0.07, 0.06),
    "O": (1.3, 0.14, 0.07),
    "U": (1.5, 0.16, 0.07),
}
"""Cohen-Massaro dominance per viseme: lip closures dominate their neighbours, rounding starts early."""


@dataclass(frozen=True)
class PhonemeSegment:
    """One recognised phone: ARPAbet label and its time span in seconds."""

    phone: str
    start: float
    end: float

    @property
    def viseme(self) -> str:
        return PHONEME_TO_VISEME.get(self.phone.upper().rstrip("012"), "sil")


def coarticulate(segments: list[PhonemeSegment], times: np.ndarray) -> np.ndarray:
    """Blend viseme targets with dominance functions (Cohen & Massaro 1993).

    Segment i has dominance ``alpha * exp(-d / tau)`` where d is the distance in seconds to its span (0 inside
    it) and tau the anticipatory constant before the span, the carry-over one after. Each output frame is the
    dominance-weighted mean of the targets; far from every segment the face rests (a weak "sil" term).

    Args:
        segments: phones in time order.
        times: [N] seconds.

    Returns:
        [N, 53] expression curves in [0, 1].
    """
    times = np.asarray(times, np.float64)
    if not segments:
        return np.zeros((times.size, NUM_EXPRESSIONS))
    vis = [s.viseme for s in segments]
    targets = np.stack([shape_vector(VISEME_SHAPES[v]) for v in vis])  # [M, 53]
    alpha, tau_b, tau_a = (np.array([VISEME_DOMINANCE[v][j] for v in vis]) for j in range(3))
    start = np.array([s.start for s in segments])
    end = np.array([max(s.end, s.start) for s in segments])
    before = np.maximum(0.0, start[None] - times[:, None])  # [N, M]
    after = np.maximum(0.0, times[:, None] - end[None])
    dom = alpha[None] * np.exp(-before / tau_b[None] - after / tau_a[None])
    rest = 1e-3
    return np.clip(dom @ targets / (dom.sum(1, keepdims=True) + rest), 0.0, 1.0)


# ------------------------------------------------------------------------------------------- pocketsphinx


def pocketsphinx_available() -> bool:
    """Whether the optional ``pocketsphinx`` package (extra ``audio``) imports."""
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        return False
    return True


class PhonemeRecognizer:
    """English phone recogniser (pocketsphinx allphone mode with its bundled model); other languages get the
    nearest English phones, which still time mouth closures and openings.

    Raises:
        ImportError: pocketsphinx is not installed (``pip install nerfhead[audio]``).
    """

    sample_rate = 16000

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder, get_model_path
        except ImportError as e:
            raise ImportError("phonetic visemes need pocketsphinx: pip install 'nerfhead[audio]'") from e
        lm = os.path.join(get_model_path(), "en-us", "en-us-phone.lm.bin")
        self._decoder = Decoder(
            allphone=lm, backtrace=True, beam=1e-20, pbeam=1e-20, lw=2.0, loglevel="FATAL"
        )
        self._frame_s = 1.0 / float(self._decoder.config["frate"])

    def __call__(self, waveform: np.ndarray) -> list[PhonemeSegment]:
        """Phones of a 16 kHz mono waveform [S] (full scale 1.0), in time order."""
        pcm = (np.clip(np.asarray(waveform, np.float32), -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        d = self._decoder
        d.start_utt()
        d.process_raw(pcm, no_search=False, full_utt=True)
        d.end_utt()
        fs = self._frame_s
        return [PhonemeSegment(s.word, s.start_frame * fs, (s.end_frame + 1) * fs) for s in d.seg()]


# ------------------------------------------------------------------------------------------- energy rules


@dataclass(frozen=True)
class EnergyRuleConfig:
    """Phoneme-free mouth rules on log-mel frames (levels in dB of window-normalised mel power)."""

    range_db: float = 30.0
    """Speech level range mapped to openness 0..1 below the tracked peak."""
    agc_decay_db: float = 0.05
    """Release of the peak tracker, dB per feature frame (5 dB/s at 100 Hz)."""
    agc_floor_db: float = -40.0
    """The peak tracker never drops below this (quiet noise is not amplified into speech)."""
    agc_init_db: float = -25.0
    """Peak tracker value before the first frame."""
    noise_rise_db: float = 0.2
    """Rise of the noise-floor tracker, dB per feature frame (it drops at once to any quieter frame)."""
    noise_init_db: float = -70.0
    """Noise-floor tracker value before the first frame, and its lowest value (digital silence does not pull
    it further down)."""
    gate_db: float = 8.0
    """Openness is 0 up to this many dB above the noise floor and full from twice that."""
    jaw_gain: float = 0.65
    """jawOpen at full openness."""
    round_db: tuple[float, float] = (-32.0, -22.0)
    """Brightness (1.5-3.5 kHz over 0.3-1.5 kHz level, dB) at full and zero lip rounding."""
    spread_db: tuple[float, float] = (-14.0, -4.0)
    """Brightness at zero and full lip spreading."""
    context_frames: int = 15
    """Half window (frames) of the speech-nearby and brow rules; also the look-ahead of the burst rule."""
    burst_frames: int = 8
    """A lip closure needs a level rise within this many frames after it (<= context_frames)."""
    burst_db: float = 8.0
    """Level rise over 2 frames that counts as a release burst."""
    smooth_past: float = 2.5
    """Smoothing kernel sigma before the frame (frames)."""
    smooth_future: float = 4.0
    """Smoothing kernel sigma after the frame (frames): the mouth anticipates the sound."""
    brows: bool = True
    """Lift the inner brows a little with sustained speech."""

    @property
    def kernel(self) -> np.ndarray:
        """Smoothing weights for offsets -B..A (sum 1): [B + A + 1] float64."""
        B, A = math.ceil(3 * self.smooth_past), math.ceil(3 * self.smooth_future)
        k = np.arange(-B, A + 1, dtype=np.float64)
        sig = np.where(k < 0, self.smooth_past, self.smooth_future)
        h = np.exp(-0.5 * (k / sig) ** 2)
        return h / h.sum()

    @property
    def past_frames(self) -> int:
        """Left context :func:`energy_curves_valid` consumes."""
        return self.context_frames + math.ceil(3 * self.smooth_past)

    @property
    def future_frames(self) -> int:
        """Right context (look-ahead) :func:`energy_curves_valid` consumes."""
        return self.context_frames + math.ceil(3 * self.smooth_future)


# descriptor columns
D_SPEECH, D_HIGH, D_BRIGHT, D_OPEN, D_FRIC = range(5)
SILENT_DESCRIPTOR = np.array([-120.0, -120.0, -20.0, 0.0, 0.0])
"""Descriptor row of digital silence; pads both ends of a clip."""


@dataclass(frozen=True)
class _Bands:
    speech: np.ndarray
    high: np.ndarray
    low: np.ndarray
    mid: np.ndarray


@functools.lru_cache(maxsize=8)
def _bands(cfg: LogMelConfig) -> _Bands:
    """Mel-band masks: speech 100-4000 Hz, high >= 4 kHz, low 0.3-1.5 kHz, mid 1.5-3.5 kHz (memoised)."""
    fc = mel_frequencies(cfg)
    return _Bands(
        speech=(fc > 100) & (fc < 4000),
        high=fc >= 4000,
        low=(fc > 300) & (fc < 1500),
        mid=(fc >= 1500) & (fc < 3500),
    )


def _db(p: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(p + 1e-12)


def _peak_track(x: np.ndarray, start: float, decay: float, floor: float) -> np.ndarray:
    """``y[t] = max(floor, x[t], y[t-1] - decay)`` with ``y[-1] = start``, in closed form:
    ``max(floor, max_{s<=t} (x[s] + decay*s) - decay*t, start - decay*(t+1))``."""
    t = np.arange(x.size, dtype=np.float64)
    y = np.maximum.accumulate(x + decay * t) - decay * t
    return np.maximum(np.maximum(y, start - decay * (t + 1)), floor)


def describe(
    logmel: np.ndarray,
    rule: EnergyRuleConfig = EnergyRuleConfig(),
    mel: LogMelConfig = LogMelConfig(),
    state: tuple[float, float] | None = None,
) -> tuple[np.ndarray, tuple[float, float]]:
    """Per-frame descriptors of log-mel frames, with causal level trackers carried across calls.

    Two trackers set the scale: a peak tracker on the speech-band level (instant attack, slow release, never
    below ``agc_floor_db``) maps level to openness, and a noise-floor tracker on the total level (instant
    drop, slow rise) gates out steady background noise. Both are recursions computed in closed form per
    call, so one call on a whole clip equals many calls on its pieces.

    Args:
        logmel: [F, n_mels] natural-log mel power (:func:`~nerfhead.audio.features.log_mel`).
        state: (peak, noise floor) before the first frame; None starts from the config's initial values.

    Returns:
        (descriptors [F, 5] float64: speech dB, high dB, brightness dB, openness in [0, 1], frication in [0, 1];
        tracker state after the last frame).
    """
    bands = _bands(mel)
    p = np.maximum(np.exp(np.asarray(logmel, np.float64)) - mel.power_floor, 0.0)
    speech, high = _db(p[:, bands.speech].sum(1)), _db(p[:, bands.high].sum(1))
    total = _db(p.sum(1))
    bright = _db(p[:, bands.mid].sum(1)) - _db(p[:, bands.low].sum(1))
    peak_in, noise_in = (rule.agc_init_db, rule.noise_init_db) if state is None else state
    if speech.size == 0:
        return np.zeros((0, 5)), (peak_in, noise_in)
    ref = _peak_track(speech, peak_in, rule.agc_decay_db, rule.agc_floor_db)
    quietest = np.maximum(total, rule.noise_init_db)
    noise = -_peak_track(-quietest, -noise_in, rule.noise_rise_db, -np.inf)  # a minimum tracker
    gate = np.clip((total - noise - rule.gate_db) / rule.gate_db, 0.0, 1.0)
    openness = gate * np.clip((speech - ref + rule.range_db) / rule.range_db, 0.0, 1.0)
    audible = gate * np.clip((high - ref + rule.range_db) / rule.range_db, 0.0, 1.0)
    fric = audible / (1.0 + np.exp(-(high - speech + 5.0) / 3.0))
    out = np.stack([speech, high, bright, openness, fric], axis=1)
    return out, (float(ref[-1]), float(noise[-1]))


def _sliding(x: np.ndarray, width: int) -> np.ndarray:
    """[N, ...] -> [N - width + 1, width, ...] windows (a view)."""
    return np.moveaxis(np.lib.stride_tricks.sliding_window_view(x, width, axis=0), -1, 1)


def energy_curves_valid(desc: np.ndarray, rule: EnergyRuleConfig = EnergyRuleConfig()) -> np.ndarray:
    """Mouth (and brow) curves from descriptors, 'valid' mode: consumes fixed context at both ends.

    Args:
        desc: [N, 5] descriptors from :func:`describe`, padded as needed.

    Returns:
        [N - rule.past_frames - rule.future_frames, 53] curves in [0, 1]; row i belongs to desc row
        ``i + rule.past_frames``.
    """
    C = rule.context_frames
    if not 2 <= rule.burst_frames <= C:
        raise ValueError("burst_frames must lie in [2, context_frames]")
    N = desc.shape[0]
    if N <= 2 * C:
        return np.zeros((max(0, N - rule.past_frames - rule.future_frames), NUM_EXPRESSIONS))
    speech, bright, o, fric = desc[:, D_SPEECH], desc[:, D_BRIGHT], desc[:, D_OPEN], desc[:, D_FRIC]
    mid = slice(C, N - C)  # rows with full context
    near = _sliding(o, 2 * C + 1).max(1)  # [N - 2C] max openness within +-C
    before = _sliding(o, C)[: N - 2 * C].max(1)  # over t-C..t-1
    level = np.maximum(speech, -80.0)
    rise = np.zeros(N)
    rise[2:] = level[2:] - level[:-2]
    burst = _sliding(rise, rule.burst_frames)[C + 1 : N - C + 1].max(1)  # max rise over t+1..t+burst
    oc, fc, bc = o[mid], fric[mid], bright[mid]

    inside = np.clip((before - 0.3) / 0.3, 0, 1)  # speech just before: a gap inside speech, not a pause start
    closure = (
        np.clip((0.2 - oc) / 0.2, 0, 1) * inside * np.clip((burst - rule.burst_db) / rule.burst_db, 0, 1)
    )
    voiced = oc * (1.0 - fc)
    (r1, r0), (s0, s1) = rule.round_db, rule.spread_db
    rounding = np.clip((r0 - bc) / (r0 - r1), 0, 1) * voiced
    spread = np.clip((bc - s0) / (s1 - s0), 0, 1) * voiced
    teeth = fc * np.clip((near - 0.3) / 0.3, 0, 1)

    e = np.zeros((oc.size, NUM_EXPRESSIONS))
    col = EXPRESSION_INDEX

    def add(name: str, v: np.ndarray) -> None:
        for n in (name,) if name in col else (name + "_L", name + "_R"):
            e[:, col[n]] += v

    add("jawOpen", rule.jaw_gain * oc * (1.0 - 0.7 * fc) * (1.0 - closure) + 0.06 * teeth)
    add("mouthLowerDown", 0.15 * voiced + 0.15 * teeth)
    add("mouthUpperUp", 0.15 * teeth)
    add("mouthFunnel", 0.45 * rounding)
    add("mouthPucker", 0.55 * rounding)
    add("mouthStretch", 0.25 * spread + 0.1 * teeth)
    add("mouthSmile", 0.1 * spread)
    add("mouthPress", 0.5 * closure)
    add("mouthClose", 0.12 * closure)
    add("mouthRollLower", 0.25 * closure)
    add("mouthRollUpper", 0.12 * closure)
    if rule.brows:
        sustained = _sliding(o, 2 * C + 1).mean(1)
        add("browInnerUp", 0.2 * np.clip((sustained - 0.35) / 0.4, 0, 1))

    h = rule.kernel
    if e.shape[0] < h.size:
        return np.zeros((0, NUM_EXPRESSIONS))
    smooth = np.einsum("nkc,k->nc", _sliding(e, h.size), h)
    return np.clip(smooth, 0.0, 1.0)


def energy_curves(
    logmel: np.ndarray, rule: EnergyRuleConfig = EnergyRuleConfig(), mel: LogMelConfig = LogMelConfig()
):
    """Energy-rule curves of a whole clip: [F, 53] at the feature rate (silence padded at both ends).

    Returns:
        (curves [F, 53] float64, descriptors [F, 5]).
    """
    desc, _ = describe(logmel, rule, mel)
    pad = np.concatenate(
        [
            np.tile(SILENT_DESCRIPTOR, (rule.past_frames, 1)),
            desc,
            np.tile(SILENT_DESCRIPTOR, (rule.future_frames, 1)),
        ]
    )
    return energy_curves_valid(pad, rule), desc
