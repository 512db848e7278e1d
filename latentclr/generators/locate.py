"""Where the published generator weights must be (checked before TensorFlow starts, so a missing file is
one clear line, not a slow start and a traceback). Imports nothing heavy."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from common.errors import UsageError

#: The original looks in $GANCONTROL_CHECKPOINT_DIR, else in a folder beside its generator code.
CHECKPOINT_ENV = "GANCONTROL_CHECKPOINT_DIR"
BIGGAN_ARCHIVE = "https://s3.amazonaws.com/models.huggingface.co/biggan"
BIGGAN_RESOLUTIONS = (128, 256, 512)
STYLEGAN2_RESOLUTIONS = {"ffhq": 1024, "car": 512, "cat": 256, "church": 256, "horse": 256,
                         "bedrooms": 256, "kitchen": 256, "places": 256}
STYLEGAN2_DRIVE_IDS = {
    "horse": "18SkqWAkgt0fIwDEf2pqeaenNi4OoCo-0", "ffhq": "1FJRwzAkV-XWbxgTwxEmEACvuqF5DsBiV",
    "church": "1HFM694112b_im01JT7wop0faftw9ty5g", "car": "1iRoWclWVbDBAy5iXYZrQnKYSbZUqXI6y",
    "cat": "15vJP8GDr0FlRYpE8gD7CdeEz2mXrQMgN", "places": "1X8-wIH3aYKjgDZt4KMOtQzN1m4AlCVhm",
    "bedrooms": "1nZTW7mjazs-qPhkmbsOLLA_6qws-eNQu", "kitchen": "15dCpnZ1YLAnETAPB0FGmXwdBclbwMEkZ",
}
STYLEGAN_RESOLUTIONS = {"ffhq": 1024, "celebahq": 1024, "bedrooms": 256, "cars": 512, "cats": 256, "vases": 1024,
                        "wikiart": 512, "fireworks": 512, "abstract": 512, "anime": 512, "ukiyo-e": 512}
STYLEGAN_DRIVE_IDS = {
    "celebahq": "1lGcRwNoXy_uwXkD6sy43aAa-rMHRR7Ad", "bedrooms": "1r0_s83-XK2dKlyY3WjNYsfZ5-fnH8QgI",
    "ffhq": "1GcxTcLDPYxQqcQjeHpLUutGzwOlXXcks", "cars": "1aaUXHRHjQ9ww91x4mtPZD0w50fsIkXWt",
    "cats": "1JzA5iiS3qPrztVofQAjbb0N4xKdjOOyV", "wikiart": "1fN3noa7Rsl9slrDXsgZVDsYFxV0O08Vx",
}
DRIVE = "https://drive.google.com/uc?export=download&id="


def checkpoint_root() -> Path:
    """``$GANCONTROL_CHECKPOINT_DIR`` or ``latentclr/generators/checkpoints`` (the original's default)."""
    return Path(os.environ.get(CHECKPOINT_ENV, Path(__file__).resolve().parent / "checkpoints"))


def missing_weights(path: Path, what: str, url: str | None) -> UsageError:
    """The one-line error for absent pre-trained weights: the file expected and where to get it."""
    where = f"download {url} to {path}" if url else f"put the file at {path}"
    return UsageError(f"{what} weights not found: {path}; {where} (or set ${CHECKPOINT_ENV} to the folder holding "
                      "them)")


def _first_file(candidates) -> Path | None:
    return next((Path(p) for p in candidates if Path(p).is_file()), None)


def biggan_weights(resolution, weights: str | None = None) -> Path:
    """``<root>/biggan-deep-<res>/pytorch_model.bin`` (or ``.npz``), or the ``weights`` path given."""
    if resolution is None or int(resolution) not in BIGGAN_RESOLUTIONS:
        raise UsageError(f"generator.resolution must be one of {BIGGAN_RESOLUTIONS}, got {resolution}")
    name = f"biggan-deep-{int(resolution)}"
    folder = checkpoint_root() / name
    candidates = [Path(weights)] if weights else [folder / "pytorch_model.bin", folder / "pytorch_model.npz"]
    found = _first_file(candidates)
    if found is None:
        path = candidates[0]
        url = f"{BIGGAN_ARCHIVE}/{name}"
        raise UsageError(f"BigGAN ({name}) weights not found: {path}; download {url}-pytorch_model.bin to that path "
                         f"and {url}-config.json to {path.parent / 'config.json'} (or set ${CHECKPOINT_ENV} to the "
                         f"folder holding {name}/)")
    return found


def stylegan2_weights(class_name: str, resolution: int, weights: str | None = None) -> Path:
    """``<root>/stylegan2/stylegan2_<class>_<res>.pt`` (``g_ema`` + ``latent_avg``), or ``.npz``."""
    folder, stem = checkpoint_root() / "stylegan2", f"stylegan2_{class_name}_{resolution}"
    candidates = [Path(weights)] if weights else [folder / f"{stem}.pt", folder / f"{stem}.npz"]
    found = _first_file(candidates)
    if found is None:
        url = DRIVE + STYLEGAN2_DRIVE_IDS[class_name] if class_name in STYLEGAN2_DRIVE_IDS else None
        raise missing_weights(candidates[0], f"StyleGAN2 ({class_name}, {resolution} px)", url)
    return found


def stylegan_weights(class_name: str, resolution: int, weights: str | None = None) -> Path:
    """``<root>/stylegan/stylegan_<class>_<res>.pt`` (a state_dict), or ``.npz``."""
    folder, stem = checkpoint_root() / "stylegan", f"stylegan_{class_name}_{resolution}"
    candidates = [Path(weights)] if weights else [folder / f"{stem}.pt", folder / f"{stem}.npz"]
    found = _first_file(candidates)
    if found is None:
        if class_name in STYLEGAN_DRIVE_IDS:
            raise missing_weights(candidates[0], f"StyleGAN ({class_name}, {resolution} px)",
                                  DRIVE + STYLEGAN_DRIVE_IDS[class_name])
        raise UsageError(f"StyleGAN ({class_name}) weights not found: {candidates[0]}; this class is published as a "
                         "TensorFlow pickle - convert it with the original repository's export_from_tf (TensorFlow 1) "
                         "and put the .pt there")
    return found


def preflight(cfg: Mapping) -> None:
    """Check that the configured pre-trained generator's weights exist (before anything heavy starts)."""
    gen = dict(cfg.get("generator") or {})
    target = str(gen.get("_target_", ""))
    if gen.get("random_init") or gen.get("config") is not None:
        return
    if target.endswith("BigGANGenerator"):
        biggan_weights(gen.get("resolution", 256), gen.get("weights"))
    elif target.endswith("StyleGAN2Generator"):
        name = str(gen.get("class_name", "ffhq"))
        if gen.get("resolution") is None and name not in STYLEGAN2_RESOLUTIONS:
            raise UsageError(f"generator.class_name={name!r} is not a StyleGAN2 class; use one of "
                             f"{', '.join(STYLEGAN2_RESOLUTIONS)}")
        stylegan2_weights(name, int(gen.get("resolution") or STYLEGAN2_RESOLUTIONS[name]), gen.get("weights"))
    elif target.endswith("StyleGANGenerator"):
        name = str(gen.get("class_name", "ffhq"))
        if gen.get("resolution") is None and name not in STYLEGAN_RESOLUTIONS:
            raise UsageError(f"generator.class_name={name!r} is not a StyleGAN class; use one of "
                             f"{', '.join(STYLEGAN_RESOLUTIONS)}")
        stylegan_weights(name, int(gen.get("resolution") or STYLEGAN_RESOLUTIONS[name]), gen.get("weights"))
