"""The model registry: one :class:`ModelKind` per model, looked up by everything that must know which models exist.

A model is two things: its avatar (an :class:`~nerfhead.models.avatar.Avatar`, rebuilt from a checkpoint by
``from_checkpoint``) and its training task (built by ``make_task`` from a capture and the model's fit config, a
frozen dataclass with named ``presets``). The engine, the CLI, the exporters and the viewer never name a model:
``nerfhead fit --model NAME`` looks the name up here, ``load_avatar`` looks up ``avatar.json["kind"]``, and an
exporter asks the loaded avatar's *capabilities* (:data:`GAUSSIANS`, :data:`DENSITY_FIELD`,
:data:`PARAMETRIC_MESH`) instead of its kind or its attributes.

Adding a model = one module (avatar + task) and one :func:`register` line (below, or in a plugin/test module
imported before the CLI runs).

>>> sorted(model_kinds())
['nerf', 'splat']
>>> get("splat").kind, GAUSSIANS in get("splat").capabilities
('splat_head', True)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from nerfhead.engine.trainer import Trainable
from nerfhead.errors import InputError
from nerfhead.models import nerf_head, nerf_train, splat_head, splat_train
from nerfhead.models.interface import Avatar, DensityFieldAvatar, GaussianAvatar, MeshAvatar

if TYPE_CHECKING:
    from nerfhead.data.capture import Capture

GAUSSIANS = "gaussians"
"""The avatar is 3D Gaussians (:class:`GaussianAvatar`: ``world_splats``, ``posed_splats``): PLY export, the
browser-side viewer."""
DENSITY_FIELD = "density_field"
"""The avatar is a density field (:class:`DensityFieldAvatar`: ``conditioning``, ``density``): iso-surface mesh."""
PARAMETRIC_MESH = "parametric_mesh"
"""The avatar carries the rigged ICT mesh (:class:`MeshAvatar`: ``posed_vertices``; also ``ict``, ``neutral``):
glTF export, framing."""
CAPABILITIES = (GAUSSIANS, DENSITY_FIELD, PARAMETRIC_MESH)

PROTOCOLS: dict[str, type] = {
    GAUSSIANS: GaussianAvatar,
    DENSITY_FIELD: DensityFieldAvatar,
    PARAMETRIC_MESH: MeshAvatar,
}
"""The interface (``models/interface.py``) an avatar promises with each capability; :func:`register` checks
that the avatar class has its methods."""


class FitTask(Trainable, Protocol):
    """A model's training task: what the engine's loop runs, plus the avatar it trains (for the live viewer)."""

    @property
    def model(self) -> Avatar:
        """The avatar being trained."""
        ...


class MakeTask(Protocol):
    def __call__(self, capture: Capture, cfg: Any, device: str | torch.device = "cpu") -> FitTask: ...


class FromCheckpoint(Protocol):
    def __call__(
        self, spec: dict[str, Any], tensors: dict[str, Tensor], device: str | torch.device = "cpu"
    ) -> Avatar: ...


@dataclass(frozen=True)
class ModelKind:
    """Everything the house needs to know about one model."""

    name: str
    """Name on the command line (``nerfhead fit --model NAME``)."""
    kind: str
    """``avatar.json["kind"]`` of its runs."""
    fit_config: type
    """Its fit config dataclass (``trainer``, ``model``, ... sections; read back from ``avatar.json["fit"]``)."""
    presets: Mapping[str, Callable[[], Any]]
    """Named fit configs (``default`` and ``fast`` at least)."""
    make_task: MakeTask
    """``(capture, fit_config, device) -> FitTask``: its training task."""
    from_checkpoint: FromCheckpoint
    """``(avatar_spec, model_tensors, device) -> Avatar``: a trained avatar from a checkpoint."""
    avatar_type: type
    """The class of its avatars (how a loaded avatar finds its kind)."""
    capabilities: frozenset[str] = frozenset()
    """What its avatars offer beyond ``render`` (see :data:`CAPABILITIES`)."""
    summary: str = ""
    """One line for ``--help``."""

    def preset(self, name: str = "default") -> Any:
        """The fit config preset ``name``.

        Raises:
            InputError: an unknown preset.
        """
        if name not in self.presets:
            raise InputError(
                "--preset",
                f"unknown preset {name!r} for {self.name}",
                hint=f"known: {', '.join(self.presets)}",
            )
        return self.presets[name]()


_REGISTRY: dict[str, ModelKind] = {}


def register(model: ModelKind) -> ModelKind:
    """Add ``model`` (replacing one of the same name); returns it.

    Raises:
        ValueError: a capability outside :data:`CAPABILITIES`, an avatar class without the methods a declared
            capability promises (:data:`PROTOCOLS`), or its ``kind`` taken by another model.
    """
    unknown = sorted(set(model.capabilities) - set(CAPABILITIES))
    if unknown:
        raise ValueError(f"unknown capabilities {unknown} (known: {', '.join(CAPABILITIES)})")
    for cap in sorted(model.capabilities):
        missing = [m for m in _methods(PROTOCOLS[cap]) if not callable(getattr(model.avatar_type, m, None))]
        if missing:
            raise ValueError(f"{model.name} declares {cap} but {model.avatar_type.__name__} lacks {missing}")
    for other in _REGISTRY.values():
        if other.kind == model.kind and other.name != model.name:
            raise ValueError(f"kind {model.kind!r} is already {other.name!r}'s")
    _REGISTRY[model.name] = model
    return model


def _methods(protocol: type) -> list[str]:
    """The methods ``protocol`` adds to :class:`Avatar`."""
    return [k for k, v in vars(protocol).items() if callable(v) and not k.startswith("_")]


def unregister(name: str) -> None:
    """Remove a model (a test's toy model, say); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def model_kinds() -> dict[str, ModelKind]:
    """The registered models by command-line name."""
    return dict(_REGISTRY)


def get(name: str) -> ModelKind:
    """The model called ``name`` on the command line.

    Raises:
        InputError: naming ``--model``.
    """
    if name not in _REGISTRY:
        raise InputError("--model", f"unknown model {name!r}", hint=f"known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def by_kind(kind: str) -> ModelKind | None:
    """The model whose runs write ``avatar.json["kind"] == kind`` (None: no such model)."""
    return next((m for m in _REGISTRY.values() if m.kind == kind), None)


def kind_of(avatar: object) -> ModelKind | None:
    """The model ``avatar`` is an instance of (None: not a registered model's avatar)."""
    return next((m for m in _REGISTRY.values() if isinstance(avatar, m.avatar_type)), None)


def has(avatar: object, capability: str) -> bool:
    """Whether ``avatar``'s model declares ``capability``."""
    model = kind_of(avatar)
    return model is not None and capability in model.capabilities


def require(avatar: object, capability: str, where: str, what: str, hint: str | None = None) -> None:
    """Refuse (one line) an operation on an avatar whose model lacks ``capability``.

    Raises:
        InputError: ``where: <model> has no <what>``.
    """
    if not has(avatar, capability):
        model = kind_of(avatar)
        name = model.name if model is not None else type(avatar).__name__
        offer = [m.name for m in _REGISTRY.values() if capability in m.capabilities]
        raise InputError(
            where,
            f"this avatar ({name}) has no {what}",
            hint=hint or (f"models with {capability}: {', '.join(offer)}" if offer else None),
        )


def preset(model: str, name: str = "default") -> Any:
    """The fit config preset ``name`` of ``model`` (``"splat"``, ``"nerf"``).

    Raises:
        InputError: unknown model or preset.
    """
    return get(model).preset(name)


register(
    ModelKind(
        name="splat",
        kind=splat_head.KIND,
        fit_config=splat_train.SplatFitConfig,
        presets=splat_train.PRESETS,
        make_task=splat_train.make_task,
        from_checkpoint=splat_head.from_checkpoint,
        avatar_type=splat_head.SplatHead,
        capabilities=frozenset({GAUSSIANS, PARAMETRIC_MESH}),
        summary="3D Gaussians bound to the ICT head mesh (GaussianAvatars-style)",
    )
)
register(
    ModelKind(
        name="nerf",
        kind=nerf_head.KIND,
        fit_config=nerf_train.NerfFitConfig,
        presets=nerf_train.PRESETS,
        make_task=nerf_train.make_task,
        from_checkpoint=nerf_head.from_checkpoint,
        avatar_type=nerf_head.NerfHead,
        capabilities=frozenset({DENSITY_FIELD}),
        summary="deformation field + hash-grid ensemble (NeRSemble-style)",
    )
)
