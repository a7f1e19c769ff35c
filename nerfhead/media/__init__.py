"""Media files in and out: decode any audio (or a video's soundtrack) to mono float32 (:mod:`nerfhead.media.audio`)
and write mp4 with its audio track muxed in (:mod:`nerfhead.media.video`). Float images to 8 bits (:mod:`nerfhead.media.image`).
Leaves: they import only ``errors`` and ``atomic``."""
