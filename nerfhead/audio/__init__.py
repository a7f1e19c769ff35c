"""Speech to Drive: decode any audio, log-mel features aligned to video frames by timestamp, rule-based
visemes (phonetic with pocketsphinx, energy-based for any language), a streaming driver, and (later) the
learned AudioToDrive network."""

from nerfhead.audio.driver import AudioStreamDriver, RuleDriverConfig, RuleVisemeDriver
from nerfhead.audio.features import (
    LogMelConfig,
    StreamingLogMel,
    feature_times,
    frames_for_video,
    log_mel,
    resample_to_frames,
)
from nerfhead.audio.io import AudioStats, AudioWarning, audio_stats, load_audio
from nerfhead.audio.visemes import EnergyRuleConfig, PhonemeRecognizer, PhonemeSegment, coarticulate

__all__ = [
    "AudioStats",
    "AudioStreamDriver",
    "AudioWarning",
    "EnergyRuleConfig",
    "LogMelConfig",
    "PhonemeRecognizer",
    "PhonemeSegment",
    "RuleDriverConfig",
    "RuleVisemeDriver",
    "StreamingLogMel",
    "audio_stats",
    "coarticulate",
    "feature_times",
    "frames_for_video",
    "load_audio",
    "log_mel",
    "resample_to_frames",
]
