"""The nerfhead viewer: a viser web page that renders a head on the server for each browser camera.

``nerfhead view RUN`` starts it. The viewer talks to a :class:`Renderable` (any trained avatar through
:class:`AvatarRenderable`, or the analytic :class:`~nerfhead.viewer.mock.MockHead`), never to a model class.
"""

from nerfhead.viewer.camera import ViewCamera, cameras_to_view, look_at_view, render_size, view_to_cameras
from nerfhead.viewer.loop import RenderLoop
from nerfhead.viewer.renderable import AvatarRenderable, BrowserSplats, Framing, Renderable, load_renderable
from nerfhead.viewer.server import ViewerConfig, ViewerServer
from nerfhead.viewer.state import SpeechClip, ViewerState

__all__ = [
    "AvatarRenderable",
    "BrowserSplats",
    "Framing",
    "RenderLoop",
    "Renderable",
    "SpeechClip",
    "ViewCamera",
    "ViewerConfig",
    "ViewerServer",
    "ViewerState",
    "cameras_to_view",
    "load_renderable",
    "look_at_view",
    "render_size",
    "view_to_cameras",
]
