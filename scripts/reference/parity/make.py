import sys, os, json, shutil, numpy as np, torch, torch.nn as nn
from diffusers import UNet2DConditionModel, AutoencoderKL, PNDMScheduler
import diffusers
# The tokenizer files of the project's tiny models (`npx tsx scripts/models-tiny.ts` writes them; a copy
# sits in each model folder of test/fixtures/parity); only the vocabulary size shapes the weights.
TOK = os.environ.get('PARITY_TOKENIZER') or os.path.join(os.path.dirname(os.path.abspath(__file__)), '../../../test/fixtures/parity/models/sd-script/tokenizer')
V = len(json.load(open(TOK + '/vocab.json'))); D = 16
class Layer(nn.Module):
    def __init__(s):
        super().__init__(); s.ln1 = nn.LayerNorm(D); s.q = nn.Linear(D, D); s.k = nn.Linear(D, D); s.v = nn.Linear(D, D); s.o = nn.Linear(D, D)
        s.ln2 = nn.LayerNorm(D); s.fc1 = nn.Linear(D, 4 * D); s.fc2 = nn.Linear(4 * D, D)
    def forward(s, x, mask):
        h = s.ln1(x); B, L, _ = h.shape; H = 2
        q = s.q(h).view(B, L, H, D // H).transpose(1, 2) * (D // H) ** -0.5
        k = s.k(h).view(B, L, H, D // H).transpose(1, 2); v = s.v(h).view(B, L, H, D // H).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) + mask, -1) @ v
        x = x + s.o(a.transpose(1, 2).reshape(B, L, D)); h = s.fc1(s.ln2(x)); h = h * torch.sigmoid(1.702 * h)
        return x + s.fc2(h)
class TextEncoder(nn.Module):
    def __init__(s):
        super().__init__(); s.token_embedding = nn.Embedding(V, D); s.position_embedding = nn.Embedding(77, D)
        s.layers = nn.ModuleList([Layer(), Layer()]); s.final_layer_norm = nn.LayerNorm(D)
    def forward(s, input_ids):
        L = input_ids.shape[1]; x = s.token_embedding(input_ids.long()) + s.position_embedding.weight[:L]
        mask = torch.triu(torch.full((L, L), -1e9), 1)
        for l in s.layers: x = l(x, mask)
        return s.final_layer_norm(x)
def build():
    torch.manual_seed(1); te = TextEncoder().eval()
    cfg = dict(sample_size=8, out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
               block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=D, attention_head_dim=8, norm_num_groups=8)
    torch.manual_seed(2); unet = UNet2DConditionModel(in_channels=4, **cfg).eval()
    torch.manual_seed(3); unet9 = UNet2DConditionModel(in_channels=9, **cfg).eval()
    torch.manual_seed(4); vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
               block_out_channels=(8, 16, 16, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=64, scaling_factor=0.18215).eval()
    return te, unet, unet9, vae
SCHED = dict(_class_name="PNDMScheduler", beta_end=0.012, beta_schedule="scaled_linear", beta_start=0.00085, clip_sample=False, num_train_timesteps=1000,
             set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1, trained_betas=None)
if __name__ == '__main__':
    import onnx
    OUT = sys.argv[1]
    te, unet, unet9, vae = build()
    ids = torch.full((1, 77), V - 1, dtype=torch.int32); ids[0, :4] = torch.tensor([V - 2, 300, 400, V - 1])
    report = {}
    def exp(m, args, path, inn, outn, dyn):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.onnx.export(m, args, path, input_names=inn, output_names=outn, dynamic_axes=dyn, opset_version=14, do_constant_folding=True)
        onnx.checker.check_model(onnx.load(path))
    for flavour in ['sd-script', 'sd-optimum', 'inpaint']:
        d = f'{OUT}/models/{flavour}'; os.makedirs(d, exist_ok=True)
        if os.path.abspath(TOK) != os.path.abspath(d + '/tokenizer'): shutil.copytree(TOK, d + '/tokenizer', dirs_exist_ok=True)
        os.makedirs(d + '/scheduler', exist_ok=True); json.dump(SCHED, open(d + '/scheduler/scheduler_config.json', 'w'), indent=2)
        u = unet9 if flavour == 'inpaint' else unet; C = 9 if flavour == 'inpaint' else 4
        with torch.no_grad():
            # input_ids: int32 as diffusers' conversion script exports them, int64 in the optimum flavour (both are in use).
            exp(te, (ids.long() if flavour == 'sd-optimum' else ids,), d + '/text_encoder/model.onnx', ['input_ids'], ['last_hidden_state'], {'input_ids': {0: 'batch', 1: 'sequence'}})
            tdt = torch.float32 if flavour == 'sd-script' else torch.int64
            class U(nn.Module):
                def __init__(s): super().__init__(); s.u = u
                def forward(s, sample, timestep, ehs): return s.u(sample, timestep, ehs, return_dict=False)[0]
            exp(U(), (torch.randn(2, C, 8, 8), torch.tensor([999, 999], dtype=tdt), torch.randn(2, 77, D)), d + '/unet/model.onnx', ['sample', 'timestep', 'encoder_hidden_states'], ['out_sample'],
                {'sample': {0: 'batch', 2: 'height', 3: 'width'}, 'timestep': {0: 'batch'}, 'encoder_hidden_states': {0: 'batch', 1: 'sequence'}})
            class E(nn.Module):
                def __init__(s): super().__init__(); s.v = vae
                def forward(s, sample):
                    dist = s.v.encode(sample).latent_dist
                    return dist.sample() if flavour == 'sd-script' else dist.parameters
            exp(E(), (torch.randn(1, 3, 64, 64),), d + '/vae_encoder/model.onnx', ['sample'], ['latent_sample' if flavour == 'sd-script' else 'latent_parameters'], {'sample': {0: 'batch', 2: 'height', 3: 'width'}})
            class Dd(nn.Module):
                def __init__(s): super().__init__(); s.v = vae
                def forward(s, latent_sample): return s.v.decode(latent_sample, return_dict=False)[0]
            exp(Dd(), (torch.randn(1, 4, 8, 8),), d + '/vae_decoder/model.onnx', ['latent_sample'], ['sample'], {'latent_sample': {0: 'batch', 2: 'height', 3: 'width'}})
        print(flavour, 'exported', flush=True)
