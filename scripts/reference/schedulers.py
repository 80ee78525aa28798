"""Scheduler parity fixtures: runs diffusers' own scheduler classes, built as the server builds
them (Class.from_config(SD 1.5's scheduler_config.json), + use_karras_sigmas=True for
DPMPP_2M_KARRAS), on a small float32 latent with a deterministic "model", and writes
test/fixtures/schedulers/<NAME>.json. See test/fixtures/schedulers/README.md for the versions
and the command. Run with Debian's python (torch) and diffusers v0.30.3 on PYTHONPATH.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import diffusers
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)

SD15 = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}

# name -> (class, from_config kwargs the name fixes)
SCHEDULERS = {
    "EULER_A": (EulerAncestralDiscreteScheduler, {}),
    "EULER": (EulerDiscreteScheduler, {}),
    "DDIM": (DDIMScheduler, {}),
    "DPMPP_2M_KARRAS": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
    "DPMPP_2M": (DPMSolverMultistepScheduler, {"use_karras_sigmas": False}),
    "PNDM": (PNDMScheduler, {}),
    "LMS": (LMSDiscreteScheduler, {}),
    "HEUN": (HeunDiscreteScheduler, {}),
    "UNIPC": (UniPCMultistepScheduler, {}),
}
ODD = {"HEUN": 13, "PNDM": 13, "UNIPC": 13}
# extra configs: (label, name, json overrides)
VARIANTS = [
    ("v_prediction", "EULER", {"prediction_type": "v_prediction"}),
    ("v_prediction", "UNIPC", {"prediction_type": "v_prediction"}),
    ("v_prediction", "DPMPP_2M_KARRAS", {"prediction_type": "v_prediction"}),
    ("v_prediction", "PNDM", {"prediction_type": "v_prediction"}),
    ("prk", "PNDM", {"skip_prk_steps": False}),
]

SHAPE = (1, 4, 6, 5)
N = int(np.prod(SHAPE))


def f9(x):
    return [float(f"{v:.9g}") for v in np.asarray(x, dtype=np.float64).reshape(-1)]


def pattern():
    i = np.arange(N, dtype=np.float64)
    return torch.from_numpy(np.sin(0.37 * i + 0.5).astype(np.float32)).reshape(SHAPE)


PATTERN = pattern()


def model(x_in, t):
    """eps (or v) = 0.9 * x_in + pattern * (t / 1000), float32 (the TS test does the same)."""
    c = np.float32(float(t) / 1000.0)
    return x_in * np.float32(0.9) + PATTERN * torch.tensor(c)


class DrawRecorder:
    """Records every randn_tensor draw a scheduler module makes (count and values)."""

    def __init__(self):
        self.draws = []

    def install(self, module):
        original = module.randn_tensor

        def recording(*args, **kwargs):
            out = original(*args, **kwargs)
            self.draws.append(out.clone())
            return out

        module.randn_tensor = recording


def build(name, overrides=None):
    cls, fixed = SCHEDULERS[name]
    cfg = dict(SD15)
    cfg.update(overrides or {})
    return cls.from_config(cfg, **fixed)


def ve_sigmas(s):
    """diffusers' sigmas, or for DDIM / PNDM sqrt((1-a)/a) of alphas_cumprod at each timestep and the final alpha."""
    if isinstance(s, (DDIMScheduler, PNDMScheduler)):
        a = [float(s.alphas_cumprod[int(t)]) for t in s.timesteps] + [float(s.final_alpha_cumprod)]
        return [math.sqrt((1 - v) / v) for v in a]
    return f9(s.sigmas)


def step(s, eps, t, lat, g):
    if isinstance(s, (EulerDiscreteScheduler, EulerAncestralDiscreteScheduler)):
        return s.step(eps, t, lat, generator=g).prev_sample
    return s.step(eps, t, lat).prev_sample


def run(name, steps, x_t, overrides, rec):
    s = build(name, overrides)
    s.set_timesteps(steps)
    lat = x_t * s.init_noise_sigma
    init_sigma = float(s.init_noise_sigma)
    g = torch.Generator().manual_seed(1234)
    rec.draws.clear()
    latents = []
    for t in s.timesteps:
        x_in = s.scale_model_input(lat, t)
        lat = step(s, model(x_in, t), t, lat, g)
        latents.append(f9(lat))
    out = {
        "steps": steps,
        "timesteps": f9(s.timesteps),
        "sigmas": ve_sigmas(s),
        "init_noise_sigma": init_sigma,
        "latents": latents,
        "noise_draws": len(rec.draws),
    }
    if name == "EULER_A":
        out["noise"] = [f9(d) for d in rec.draws]
    return out


def img2img(name, steps, strength, init, noise, overrides, rec):
    s = build(name, overrides)
    s.set_timesteps(steps)
    # StableDiffusionImg2ImgPipeline.get_timesteps (diffusers 0.30.3)
    init_timestep = min(int(steps * strength), steps)
    t_start = max(steps - init_timestep, 0)
    timesteps = s.timesteps[t_start * s.order :]
    if hasattr(s, "set_begin_index"):
        s.set_begin_index(t_start * s.order)
    noised = s.add_noise(init, noise, timesteps[:1])
    lat = noised
    g = torch.Generator().manual_seed(99)
    rec.draws.clear()
    for t in timesteps:
        x_in = s.scale_model_input(lat, t)
        lat = step(s, model(x_in, t), t, lat, g)
    out = {
        "strength": strength,
        "steps": steps,
        "start_index": t_start * s.order,
        "timesteps": f9(timesteps),
        "noised": f9(noised),
        "final": f9(lat),
        "noise_draws": len(rec.draws),
    }
    if name == "EULER_A":
        out["noise"] = [f9(d) for d in rec.draws]
    return out


def main(out_dir):
    from diffusers.schedulers import scheduling_euler_ancestral_discrete as mod_a
    from diffusers.schedulers import scheduling_euler_discrete as mod_e

    rec = DrawRecorder()
    rec.install(mod_a)
    rec.install(mod_e)
    x_t = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    init = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1)) * 0.5
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    common = {
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
        "shape": list(SHAPE),
        "model": "out = 0.9 * x_in + pattern * fround(t / 1000), float32",
        "pattern": f9(PATTERN),
        "x_T": f9(x_t),
        "init_latents": f9(init),
        "img2img_noise": f9(noise),
        "base_config": SD15,
    }
    os.makedirs(out_dir, exist_ok=True)
    cases = [(name, name, {}) for name in SCHEDULERS] + [(f"{name}.{label}", name, ov) for label, name, ov in VARIANTS]
    for file_name, name, overrides in cases:
        counts = [20, 7] + ([ODD[name]] if name in ODD else [])
        data = dict(common)
        data["name"] = name
        data["class"] = SCHEDULERS[name][0].__name__
        data["overrides"] = overrides
        data["from_config_kwargs"] = SCHEDULERS[name][1]
        data["runs"] = [run(name, n, x_t, overrides, rec) for n in counts]
        data["img2img"] = [img2img(name, 20, st, init, noise, overrides, rec) for st in (0.3, 0.75, 1.0)]
        with open(os.path.join(out_dir, f"{file_name}.json"), "w") as f:
            json.dump(data, f, separators=(",", ":"))
        print("wrote", file_name)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/schedulers")
