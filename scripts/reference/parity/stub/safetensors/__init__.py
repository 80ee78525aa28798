# Stub (extends /work/ref/stubs/safetensors with safe_open, which diffusers' loaders import).
__version__ = "0.0.0"
def _no(*a, **k): raise RuntimeError("safetensors stub")
load_file = save_file = load = safe_open = _no
