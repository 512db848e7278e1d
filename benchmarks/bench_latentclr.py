"""Training iterations per second of LatentCLR's train step, per direction model (global / linear / nonlinear).

One iteration = the original's: K edited copies of a batch of B latents, generator features of the unedited
batch and of every edit (direction by direction), projector, contrastive loss, coupled-L2 Adam step.
Generators, all random-init and built in memory:

- ``identity``: the feature is the latent itself, so the time is the direction model + loss + optimiser;
- ``toy``: a small Keras conv generator (feature layer ``conv8``);
- ``stylegan2``: rosinality StyleGAN2 at ``--resolution`` up to ``conv1`` (the README's FFHQ setting: K=100,
  B=8, W space), for GPU machines (``--generator stylegan2``).

Modes: ``eager`` (the step's Python function run op by op), ``tf.function`` (``jit_compile=false``, and the
trainer's choice with several replicas) and ``xla`` (``jit_compile=true``; the default ``auto`` picks it on one
device). Defaults are the BigGAN README setting K=32, B=16 with S=128. Every (generator, model, mode) runs in
its own process and prints one JSON line (``benchmarks/harness.emit``).

    python benchmarks/bench_latentclr.py
    python benchmarks/bench_latentclr.py --generator stylegan2 --k 100 --batch_size 8 --mode xla
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import emit  # noqa: E402

MODES = ("eager", "tf.function", "xla")
MODELS = ("global", "linear", "nonlinear")


def build_config(generator: str, model: str, k: int, batch_size: int, latent_dim: int, resolution: int, tmp: Path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from latentclr.testing import identity_generator, save_model, toy_generator

    if generator == "identity":
        path = save_model(identity_generator(latent_dim), tmp / "identity.keras")
        group = ["generator=keras", f"generator.model_path={path}", "generator.feature_layer=identity"]
    elif generator == "toy":
        path = save_model(toy_generator(latent_dim=latent_dim, size=32), tmp / "toy.keras")
        group = ["generator=keras", f"generator.model_path={path}", "generator.feature_layer=conv8"]
    else:
        group = ["generator=stylegan2", "generator.feature_layer=conv1", f"+generator.resolution={resolution}",
                 "+generator.random_init=true", "generator.class_name=random"]
    with initialize_config_dir(config_dir=str(ROOT / "latentclr" / "conf"), version_base=None):
        cfg = compose("train", overrides=group + [f"k={k}", f"model={model}", f"hparams.batch_size={batch_size}",
                                                  "model.alpha=[-3.0,3.0]"])
    return OmegaConf.to_container(cfg, resolve=True)


def measure(generator: str, model: str, mode: str, k: int, batch_size: int, latent_dim: int, resolution: int,
            repeats: int) -> dict:
    import tempfile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from benchmarks.harness import machine, time_calls
    from latentclr import optim, trainer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config(generator, model, k, batch_size, latent_dim, resolution, Path(tmp))
        trainer.seed_everything(cfg)
        pieces = trainer.Pieces(cfg)
    variables = list(pieces.model.trainable_variables)
    opt = optim.build_optimizer(variables, cfg["hparams"]["optimizer"], cfg["hparams"]["scheduler"])
    step = trainer.make_train_step(pieces, opt, variables, len(variables), True, None, jit_compile=mode == "xla",
                                   compiled=mode != "eager")
    batches = [pieces.draw(batch_size) for _ in range(4)]
    counter = iter(range(10 ** 9))
    timing = time_calls(lambda: step(*batches[next(counter) % 4]), warmup=2, repeats=repeats, calls_per_repeat=5,
                        sync=lambda out: float(out["loss"]))
    return {
        "bench": f"latentclr/train_step/{generator}/{model}",
        "mode": mode,
        "batch": batch_size,
        "k": k,
        "latent_dim": pieces.model.size,
        "feature_shape": list(pieces.feature_shape),
        "steps_per_sec": timing["steps_per_sec"],
        "examples_per_sec": round(timing["steps_per_sec"] * batch_size * k, 3),
        "compile_s": timing["compile_s"],
        "cpu_ms_per_step": timing["cpu_ms_per_step"],
        "peak_rss_mb": timing["peak_rss_mb"],
        "step_mem_mb": timing["step_mem_mb"],
        "steps_per_sec_all": timing["steps_per_sec_all"],
        "machine": {**machine(), "tensorflow": tf.__version__},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", choices=("identity", "toy", "stylegan2"), action="append",
                        help="generator(s) to time (default: identity and toy)")
    parser.add_argument("--model", choices=MODELS, action="append", help="direction model(s) (default: all three)")
    parser.add_argument("--mode", choices=MODES, help="one mode in this process (default: each in a subprocess)")
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--latent_dim", type=int, default=128, help="latent size of the identity / toy generators")
    parser.add_argument("--resolution", type=int, default=256, help="StyleGAN2 resolution")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    generators = args.generator or ["identity", "toy"]
    models = args.model or list(MODELS)
    if args.mode and len(generators) == 1 and len(models) == 1:
        emit(measure(generators[0], models[0], args.mode, args.k, args.batch_size, args.latent_dim,
                     args.resolution, args.repeats))
        return
    for generator in generators:
        for model in models:
            for mode in ([args.mode] if args.mode else MODES):
                cmd = [sys.executable, __file__, "--generator", generator, "--model", model, "--mode", mode,
                       "--k", str(args.k), "--batch_size", str(args.batch_size), "--latent_dim", str(args.latent_dim),
                       "--resolution", str(args.resolution), "--repeats", str(args.repeats)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
                if proc.returncode or not lines:
                    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                    emit({"bench": f"latentclr/train_step/{generator}/{model}", "mode": mode, "error": tail[:200]})
                else:
                    emit(json.loads(lines[-1]))


if __name__ == "__main__":
    main()
