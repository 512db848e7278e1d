"""From a composed Hydra config to objects: the original's ``hydra.utils.instantiate`` calls, by registry.

The ``_target_`` strings of the original configs (``colat.models.Fixed``, ``colat.generators.BigGANGenerator``,
...) stay valid - saved ``.hydra/config.yaml`` files of the original, the released demo configs included,
drive this port unchanged - and map to the port's classes below; the port's own module paths are accepted
too. Unknown keys of a loaded config are ignored, missing new keys take their defaults.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf

from common.errors import UsageError
from latentclr import losses, models

MODELS = {
    "colat.models.Fixed": models.Fixed,
    "colat.models.LinearConditional": models.LinearConditional,
    "colat.models.NonlinearConditional": models.NonlinearConditional,
}
PROJECTORS = {
    "colat.projectors.IdentityProjector": models.IdentityProjector,
    "colat.projectors.LinearProjector": models.LinearProjector,
    "colat.projectors.NonlinearProjector": models.NonlinearProjector,
}
LOSSES = {"colat.loss.ContrastiveLoss"}
GENERATORS = {
    "colat.generators.BigGANGenerator": "latentclr.generators.biggan:BigGANGenerator",
    "colat.generators.StyleGAN2Generator": "latentclr.generators.stylegan2:StyleGAN2Generator",
    "colat.generators.StyleGANGenerator": "latentclr.generators.stylegan:StyleGANGenerator",
    "latentclr.generators.KerasGenerator": "latentclr.generators.keras_generator:KerasGenerator",
    "latentclr.generators.ProjectGenerator": "latentclr.generators.project:ProjectGenerator",
}
for _registry in (MODELS, PROJECTORS):
    _registry.update({k.replace("colat.", "latentclr.").replace(".loss.", ".losses."): v
                      for k, v in list(_registry.items())})
LOSSES |= {"latentclr.losses.ContrastiveLoss"}
GENERATORS.update({k.replace("colat.", "latentclr."): v for k, v in list(GENERATORS.items())})


def to_dict(cfg) -> dict:
    """A plain, resolved dict of a (Dict)Config or mapping."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg)


def _kwargs(node: Mapping, group: str, registry) -> tuple[object, dict]:
    node = dict(node)
    target = node.pop("_target_", None)
    if target not in registry:
        raise UsageError(f"{group}._target_={target!r} is not known; use one of {sorted(registry)}")
    return registry[target], node


def build_generator(cfg: Mapping):
    """The frozen generator of ``cfg['generator']`` (weights loaded; a missing file is a UsageError)."""
    target, kwargs = _kwargs(cfg["generator"], "generator", GENERATORS)
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    return cls(**kwargs)


def build_model(cfg: Mapping, latent_dim: int | None = None):
    """The direction model of ``cfg['model']`` with ``k`` directions (``model.size`` null: the generator's)."""
    cls, kwargs = _kwargs(cfg["model"], "model", MODELS)
    size = kwargs.pop("size", None)
    if size is None:
        if latent_dim is None:
            raise UsageError("model.size is not set and the generator does not give its latent size")
        size = latent_dim
    if latent_dim is not None and int(size) != int(latent_dim):
        raise UsageError(f"model.size={size} but the generator's latents have {latent_dim} dimensions")
    k = int(cfg["k"])
    if k < 2:
        raise UsageError(f"k must be at least 2 (the loss contrasts directions), got {k}")
    try:
        return cls(k=k, size=int(size), norm_eps=float(cfg.get("norm_eps", 0.0) or 0.0), name="model", **kwargs)
    except TypeError as err:
        raise UsageError(f"model: {err}") from err


def build_projector(cfg: Mapping, feature_size: int | None = None):
    """The projector head of ``cfg['projector']``; checks ``in_features`` against the feature size."""
    factory, kwargs = _kwargs(cfg["projector"], "projector", PROJECTORS)
    if "in_features" in kwargs and kwargs["in_features"] is None:
        if feature_size is None:
            raise UsageError("projector.in_features is null and the feature size is unknown")
        kwargs["in_features"] = feature_size  # null (the port's generic size files): the feature layer's size
    try:
        projector = factory(norm_eps=float(cfg.get("norm_eps", 0.0) or 0.0), **kwargs)
    except TypeError as err:
        raise UsageError(f"projector: {err}") from err
    if feature_size is not None:
        projector.check_feature_size(feature_size)
    return projector


def build_loss(cfg: Mapping):
    """``loss_fn(features) -> (acc, loss)`` of ``cfg['loss']`` with ``k`` directions."""
    node = dict(cfg["loss"])
    target = node.pop("_target_", None)
    if target not in LOSSES:
        raise UsageError(f"loss._target_={target!r} is not known; use one of {sorted(LOSSES)}")
    reduce = node.get("reduce", "mean")
    if reduce not in losses.REDUCTIONS:
        raise UsageError(f"loss.reduce must be mean or sum, got {reduce!r}")
    return functools.partial(losses.contrastive_loss, k=int(cfg["k"]), temp=float(node.get("temp", 0.5)),
                             use_abs=bool(node.get("abs", True)), reduce=reduce,
                             divide_by_temp=bool(node.get("divide_by_temp", False)))


def feed_layers(cfg: Mapping, generator) -> list[int] | None:
    """``feed_layers`` as a list of ints (None when unset); a generator with one latent is an error."""
    layers = cfg.get("feed_layers")
    if layers is None:
        return None
    if isinstance(layers, int):
        layers = [layers]
    layers = [int(i) for i in layers]
    if generator.n_latent() <= 1:
        raise UsageError("feed_layers needs a generator with per-layer latents; this one has n_latent = 1")
    return layers
