"""Speech to Drive: decode any audio, log-mel features aligned to video frames by timestamp, rule-based
visemes (phonetic with pocketsphinx, energy-based for any language), the learned AudioToDrive network
(:mod:`nerfhead.audio.network`, :mod:`nerfhead.audio.train`) and streaming drivers for both."""

from nerfhead.audio.driver import AudioStreamDriver, RuleDriverConfig, RuleVisemeDriver
from nerfhead.audio.features import (
    LogMelConfig,
    StreamingLogMel,
    feature_times,
    frames_for_video,
    log_mel,
    resample_to_frames,
)
from nerfhead.audio.stream import NetworkStreamDriver
from nerfhead.audio.visemes import EnergyRuleConfig, PhonemeRecognizer, PhonemeSegment, coarticulate
from nerfhead.media.audio import AudioStats, AudioWarning, audio_stats, load_audio

__all__ = [
    "AudioStats",
    "AudioStreamDriver",
    "AudioWarning",
    "EnergyRuleConfig",
    "LogMelConfig",
    "NetworkStreamDriver",
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
