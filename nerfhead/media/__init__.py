"""Media files in and out: decode any audio (or a video's soundtrack) to mono float32 (:mod:`nerfhead.media.audio`)
and write mp4 with its audio track muxed in (:mod:`nerfhead.media.video`). Layer 2 with ``data/``: they import only
``errors``, ``atomic`` and ``data.images``."""
