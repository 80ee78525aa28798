"""Parity cases: runs diffusers' own StableDiffusionPipeline, StableDiffusionImg2ImgPipeline and
StableDiffusionInpaintPipeline (v0.30.3, torch CPU generators) on the torch modules that
make.py exported to test/fixtures/parity/models, and writes what they computed:

  cases.json             every case: pipeline, model folder, request, what the generator drew
                         (shapes in order), the timesteps, and where its tensors lie
  <case>.f32             float32 little-endian: the first generator draw, the initial latents,
                         then the latents after every step of the loop (after the 4-channel
                         inpainting blend, where callback_on_step_end sees them)
  <case>-<k>.png         the pipeline's images: output_type="np", then numpy_to_pil's
                         (x * 255).round().astype(uint8)
  inputs/                the init images and masks both sides read

The text encoder is the project's own tiny module (make.py), so the pipelines get prompt_embeds
and negative_prompt_embeds from it; the ids come from the engine's tokenizer (tokenize.ts), which
test/tokenizer-parity.test.ts holds to transformers' CLIPTokenizer.

    PYTHONPATH=scripts/reference/parity/stub:<diffusers-0.30.3>/src:<huggingface_hub-0.25.2>/src \\
      /usr/bin/python3 scripts/reference/parity/cases.py test/fixtures/parity
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

import diffusers
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    UniPCMultistepScheduler,
)
from diffusers.utils import torch_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make  # noqa: E402  (the same modules, rebuilt from the same seeds)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '../../..'))

# name -> (class, from_config kwargs the name fixes): as the server builds them (schedulers/index.ts)
SCHEDULERS = {
    'DPMPP_2M_KARRAS': (DPMSolverMultistepScheduler, {'use_karras_sigmas': True}),
    'EULER_A': (EulerAncestralDiscreteScheduler, {}),
    'EULER': (EulerDiscreteScheduler, {}),
    'DDIM': (DDIMScheduler, {}),
    'PNDM': (PNDMScheduler, {}),
    'LMS': (LMSDiscreteScheduler, {}),
    'HEUN': (HeunDiscreteScheduler, {}),
    'DPMPP_2M': (DPMSolverMultistepScheduler, {'use_karras_sigmas': False}),
    'UNIPC': (UniPCMultistepScheduler, {}),
}

PROMPT = 'a red fox in the snow, highly detailed'
NEGATIVE = 'blurry, low quality'


def cases():
    out = []
    # text2image: every scheduler, with guidance (CFG batch of 2) and without (guidance 1), on the
    # export with a float timestep: Euler, LMS and Heun step at fractional timesteps (linspace).
    for k, name in enumerate(SCHEDULERS):
        for cfg in (True, False):
            out.append(dict(name=f't2i-{name.lower()}-{"cfg" if cfg else "nocfg"}', mode='text2image', model='sd-script',
                            scheduler=name, steps=8, guidance=7.5 if cfg else 1.0, seed=1000 + 2 * k + (0 if cfg else 1),
                            samples=1, width=64, height=64))
    out += [
        # An int64 timestep input cannot carry 856.71: the engine rounds it, so here diffusers' UNet gets
        # torch.round(t) too (roundTimestep), which is what the exported graph sees.
        dict(name='t2i-heun-int64-nocfg', mode='text2image', model='sd-optimum', scheduler='HEUN', steps=8, guidance=1.0,
             seed=1100, samples=1, width=64, height=64, roundTimestep=True),
        dict(name='t2i-euler_a-samples3', mode='text2image', model='sd-script', scheduler='EULER_A', steps=6, guidance=5.0,
             seed=42, samples=3, width=64, height=64),
        dict(name='t2i-dpmpp_2m_karras-wide', mode='text2image', model='sd-script', scheduler='DPMPP_2M_KARRAS', steps=7,
             guidance=7.5, seed=7, samples=1, width=96, height=64),
        dict(name='t2i-unipc-tall-samples3', mode='text2image', model='sd-optimum', scheduler='UNIPC', steps=6, guidance=3.0,
             seed=2 ** 31 - 1, samples=3, width=64, height=80),
        # image2image: the optimum >= 1.23 encoder (latent_parameters) and the conversion script's (RandomNormalLike).
        dict(name='i2i-euler_a-params', mode='image2image', model='sd-optimum', scheduler='EULER_A', steps=10, guidance=7.5,
             seed=11, samples=1, width=64, height=64, strength=0.6, image='photo-64x64.png'),
        dict(name='i2i-ddim-sample-samples3', mode='image2image', model='sd-script', scheduler='DDIM', steps=10, guidance=6.0,
             seed=12, samples=3, width=64, height=64, strength=0.5, image='photo-64x64.png'),
        dict(name='i2i-pndm-params-wide', mode='image2image', model='sd-optimum', scheduler='PNDM', steps=12, guidance=7.5,
             seed=13, samples=1, width=96, height=64, strength=0.75, image='photo-96x64.png'),
        dict(name='i2i-heun-sample-nocfg', mode='image2image', model='sd-script', scheduler='HEUN', steps=8, guidance=1.0,
             seed=14, samples=1, width=64, height=64, strength=0.8, image='photo-64x64.png'),
        dict(name='i2i-dpmpp_2m_karras-strength1', mode='image2image', model='sd-optimum', scheduler='DPMPP_2M_KARRAS',
             steps=6, guidance=7.5, seed=15, samples=1, width=64, height=64, strength=1.0, image='photo-64x64.png'),
        # inpainting: the 9-channel UNet (strength 1 starts from pure noise; below 1 from the noised image) and a 4-channel one.
        dict(name='inp9-dpmpp_2m_karras-strength1', mode='inpainting', model='inpaint', scheduler='DPMPP_2M_KARRAS', steps=8,
             guidance=7.5, seed=21, samples=1, width=64, height=64, strength=1.0, image='photo-64x64.png', mask='mask-64x64.png'),
        dict(name='inp9-euler_a-strength07-samples3', mode='inpainting', model='inpaint', scheduler='EULER_A', steps=10,
             guidance=7.5, seed=22, samples=3, width=64, height=64, strength=0.7, image='photo-64x64.png', mask='mask-64x64.png'),
        dict(name='inp9-ddim-wide-nocfg', mode='inpainting', model='inpaint', scheduler='DDIM', steps=8, guidance=1.0, seed=23,
             samples=1, width=96, height=64, strength=1.0, image='photo-96x64.png', mask='mask-96x64.png'),
        dict(name='inp4-euler-strength1', mode='inpainting', model='sd-script', scheduler='EULER', steps=8, guidance=7.5,
             seed=24, samples=1, width=64, height=64, strength=1.0, image='photo-64x64.png', mask='mask-64x64.png'),
        dict(name='inp4-lms-strength06-samples3', mode='inpainting', model='sd-optimum', scheduler='LMS', steps=10, guidance=7.5,
             seed=25, samples=3, width=64, height=64, strength=0.6, image='photo-64x64.png', mask='mask-64x64.png'),
    ]
    return out


def write_inputs(d):
    """Deterministic pictures with edges and gradients, and masks with a soft edge (binarised at 0.5)."""
    os.makedirs(d, exist_ok=True)
    for w, h in ((64, 64), (96, 64)):
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        r = 127.5 + 127.5 * np.sin(x / 7.0) * np.cos(y / 11.0)
        g = 255.0 * x / (w - 1)
        b = np.where((x - w / 2) ** 2 + (y - h / 2) ** 2 < (h / 3) ** 2, 230.0, 25.0)
        rgb = np.stack([r, g, b], -1).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(rgb, 'RGB').save(f'{d}/photo-{w}x{h}.png')
        # A disc, fading from 255 to 0 over 12 px: values on both sides of 127.5 test the binarisation.
        dist = np.sqrt((x - w * 0.6) ** 2 + (y - h * 0.45) ** 2)
        m = np.clip((h * 0.35 - dist) / 12.0 + 0.5, 0, 1) * 255.0
        Image.fromarray(m.round().astype(np.uint8), 'L').save(f'{d}/mask-{w}x{h}.png')


class Recorder:
    """Wraps randn_tensor wherever diffusers imported it, to record every draw in order."""

    def __init__(self):
        self.draws = []
        original = torch_utils.randn_tensor

        def recording(*args, **kwargs):
            t = original(*args, **kwargs)
            self.draws.append(t.detach().clone())
            return t

        for module in list(sys.modules.values()):
            if module and getattr(module, '__name__', '').startswith('diffusers') and getattr(module, 'randn_tensor', None) is original:
                module.randn_tensor = recording


def ids_for(texts):
    tok = os.path.join(ROOT, 'test/fixtures/parity/models/sd-script/tokenizer')
    out = subprocess.run(['npx', 'tsx', os.path.join(HERE, 'tokenize.ts'), tok, json.dumps(texts)], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main(fixtures):
    out_dir = os.path.join(fixtures, 'cases')
    os.makedirs(out_dir, exist_ok=True)
    write_inputs(os.path.join(fixtures, 'inputs'))
    te, unet, unet9, vae = make.build()
    recorder = Recorder()
    prompt_ids, negative_ids = ids_for([PROMPT, NEGATIVE])
    with torch.no_grad():
        cond = te(torch.tensor([prompt_ids], dtype=torch.int32))
        uncond = te(torch.tensor([negative_ids], dtype=torch.int32))
    index = dict(diffusers=diffusers.__version__, torch=torch.__version__, numpy=np.__version__,
                 prompt=PROMPT, negativePrompt=NEGATIVE, promptIds=prompt_ids, negativeIds=negative_ids, cases=[])
    for case in cases():
        cls, fixed = SCHEDULERS[case['scheduler']]
        scheduler = cls.from_config(make.SCHED, **fixed)
        common = dict(vae=vae, text_encoder=None, tokenizer=None, scheduler=scheduler, safety_checker=None,
                      feature_extractor=None, requires_safety_checker=False)
        u = unet9 if case['model'] == 'inpaint' else unet
        pipe_cls = {'text2image': StableDiffusionPipeline, 'image2image': StableDiffusionImg2ImgPipeline,
                    'inpainting': StableDiffusionInpaintPipeline}[case['mode']]
        pipe = pipe_cls(unet=u, **common)
        u.forward = type(u).forward.__get__(u)
        if case.get('roundTimestep'):
            unrounded = u.forward
            u.forward = lambda sample, timestep, *a, **k: unrounded(sample, torch.round(torch.as_tensor(timestep)), *a, **k)
        pipe.set_progress_bar_config(disable=True)
        steps_seen = []

        def on_step(p, i, t, kw):
            steps_seen.append((float(t), kw['latents'].detach().clone()))
            return kw

        initial = []
        original_prepare = pipe.prepare_latents

        def prepare(*a, **k):
            r = original_prepare(*a, **k)
            initial.append((r[0] if isinstance(r, tuple) else r).detach().clone())
            return r

        pipe.prepare_latents = prepare
        kwargs = dict(prompt_embeds=cond, negative_prompt_embeds=uncond, num_inference_steps=case['steps'],
                      guidance_scale=case['guidance'], num_images_per_prompt=case['samples'],
                      generator=torch.Generator('cpu').manual_seed(case['seed']), output_type='np',
                      callback_on_step_end=on_step, callback_on_step_end_tensor_inputs=['latents'])
        if case['mode'] == 'text2image':
            kwargs.update(width=case['width'], height=case['height'])
        else:
            kwargs.update(image=Image.open(os.path.join(fixtures, 'inputs', case['image'])).convert('RGB'), strength=case['strength'])
        if case['mode'] == 'inpainting':
            kwargs.update(mask_image=Image.open(os.path.join(fixtures, 'inputs', case['mask'])), width=case['width'],
                          height=case['height'])
        recorder.draws.clear()
        with torch.no_grad():
            images = pipe(**kwargs).images
        assert len(initial) == 1, 'prepare_latents ran once'
        tensors = [recorder.draws[0], initial[0]] + [lat for _, lat in steps_seen]
        blob = np.concatenate([t.numpy().astype('<f4').reshape(-1) for t in tensors])
        blob.tofile(os.path.join(out_dir, case['name'] + '.f32'))
        pngs = []
        for k, img in enumerate(images):
            name = f"{case['name']}-{k}.png"
            Image.fromarray((img * 255).round().astype('uint8')).save(os.path.join(out_dir, name))
            pngs.append(name)
        record = dict(case, draws=[list(t.shape) for t in recorder.draws], timesteps=[t for t, _ in steps_seen],
                      latentShape=list(initial[0].shape), tensors=os.path.basename(case['name'] + '.f32'), images=pngs)
        index['cases'].append(record)
        print(case['name'], 'draws', record['draws'], 'steps', len(steps_seen), flush=True)
    with open(os.path.join(fixtures, 'cases.json'), 'w') as f:
        json.dump(index, f, indent=1)
        f.write('\n')


if __name__ == '__main__':
    main(sys.argv[1])
