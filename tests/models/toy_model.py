"""A third model for the registry test: a head of one learned colour (the smallest thing the house can fit,
evaluate and load). Its avatar declares no capability, so exporters that need one refuse it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from nerfhead.data.cameras import Cameras
from nerfhead.data.capture import Capture
from nerfhead.data.drive import Drive
from nerfhead.engine.config import TrainerConfig, from_dict
from nerfhead.engine.targets import capture_background, target_image
from nerfhead.engine.trainer import Optimizers, StepOutput
from nerfhead.models.avatar import RenderOutput, pair_indices
from nerfhead.models.fit_task import MODEL_PREFIX, avatar_spec, strip_prefix, with_prefix
from nerfhead.models.registry import ModelKind

KIND = "toy_head"


@dataclass(frozen=True)
class ToyFitConfig:
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(steps=60, eval_every=0, progress=False)
    )
    lr: float = 0.05
    """Adam's learning rate for the colour."""


class ToyHead(nn.Module):
    """Renders one colour everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.logit = nn.Parameter(torch.zeros(3))

    @property
    def colour(self) -> Tensor:
        return torch.sigmoid(self.logit)

    def render(self, cameras: Cameras, drive: Drive, background: Tensor | None = None) -> RenderOutput:
        cams, _ = pair_indices(len(cameras), len(drive))
        h, w = int(cameras.height[0]), int(cameras.width[0])
        rgb = self.colour.expand(len(cams), h, w, 3)
        one = torch.ones(len(cams), h, w, 1)
        return RenderOutput(rgb=rgb, alpha=one, depth=one)


class ToyFit:
    """The toy's training task: the mean squared error against every training image at once."""

    def __init__(self, capture: Capture, cfg: ToyFitConfig, device: str | torch.device = "cpu"):
        split = capture.split()
        self.cfg, self.split = cfg, split
        self.bg = torch.tensor(capture_background(capture))
        self.model = ToyHead()
        frames = [
            f
            for c in split.train_cameras
            for t in split.train_timesteps
            if (f := capture.frame_index(c, t)) is not None
        ]
        self.targets = torch.stack([target_image(capture, f, self.bg)[0] for f in frames])
        tests = split.test_timesteps if split.test_timesteps is not None else range(capture.num_timesteps)
        held = [f for c in split.test_cameras for t in tests if (f := capture.frame_index(c, t)) is not None]
        self.held_out = torch.stack([target_image(capture, f, self.bg)[0] for f in held])

    def make_optimizers(self) -> Optimizers:
        return {"colour": torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)}

    def set_learning_rates(self, step: int, optimizers: Optimizers) -> None:
        pass

    def training_loss(self, step: int, generator: torch.Generator) -> StepOutput:
        loss = ((self.model.colour - self.targets) ** 2).mean()
        return StepOutput(loss=loss, scalars={"loss": float(loss.detach())})

    def before_backward(self, step: int, optimizers: Optimizers, out: StepOutput) -> None:
        pass

    def after_step(self, step: int, optimizers: Optimizers, out: StepOutput) -> None:
        pass

    def state_tensors(self) -> dict[str, Tensor]:
        return with_prefix(MODEL_PREFIX, self.model.state_dict())

    def load_state_tensors(self, tensors: Mapping[str, Tensor]) -> None:
        self.model.load_state_dict(strip_prefix(MODEL_PREFIX, tensors))

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        return {"mse_heldout": float(((self.model.colour - self.held_out) ** 2).mean())}

    def avatar_spec(self) -> dict[str, Any]:
        return avatar_spec(KIND, None, self.cfg, self.split, self.bg)


def make_task(capture: Capture, cfg: ToyFitConfig, device: str | torch.device = "cpu") -> ToyFit:
    return ToyFit(capture, cfg, device)


def from_checkpoint(
    spec: dict[str, Any], tensors: dict[str, Tensor], device: str | torch.device = "cpu"
) -> ToyHead:
    model = ToyHead()
    model.load_state_dict(dict(tensors))
    return model.to(device)


TOY = ModelKind(
    name="toy",
    kind=KIND,
    fit_config=ToyFitConfig,
    presets={"default": ToyFitConfig, "fast": lambda: from_dict(ToyFitConfig, {"lr": 0.1})},
    make_task=make_task,
    from_checkpoint=from_checkpoint,
    avatar_type=ToyHead,
    summary="one learned colour (tests)",
)
"""The toy's registry entry (a test registers it with one line: ``register(TOY)``)."""
