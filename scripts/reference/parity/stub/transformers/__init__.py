# Minimal placeholder package so diffusers' pipelines import; no transformers code.
__version__ = "4.44.0"
class _Placeholder:
    def __init__(self, *a, **k): pass
def __getattr__(name):
    if name.startswith("__"): raise AttributeError(name)
    cls = type(name, (_Placeholder,), {})
    globals()[name] = cls
    return cls
