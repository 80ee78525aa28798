"""Converts a float32 ONNX export of the parity models into the shape of a real fp16 export.

Real fp16 exports (optimum-cli --fp16, diffusers' convert_stable_diffusion_checkpoint_to_onnx.py
--fp16) trace the models in half precision on CUDA, which torch 1.13 cannot do on the CPU (no half
convolutions), so this rewrites the float32 graphs with the onnx package alone:

- every FLOAT initializer, Constant value and ConstantOfShape value becomes FLOAT16; finite values
  beyond the half range are clamped to +-65504 first (the text encoder's -1e9 causal mask: torch
  in half precision would use finfo(float16).min, -65504);
- Cast to=FLOAT becomes Cast to=FLOAT16 (`x.to(dtype)`), graph inputs and outputs FLOAT -> FLOAT16;
- what must stay float32 does: Resize's roi and scales (the schema wants tensor(float) scales);
- float32 islands of the real exports are mirrored: a Cast to FLOAT of an integer tensor (the
  UNet's `timesteps[:, None].float()` in get_timestep_embedding) and a Cast to FLOAT whose only
  consumers are Softmax (attention's upcast_softmax, the VAE's mid-block attention) stay FLOAT;
  the nodes computing from their outputs, and the constants those nodes read, stay float32, up to
  the next Cast, which becomes FLOAT16 (`t_emb.to(dtype=sample.dtype)`, `attention_probs.to(dtype)`);
- RandomNormalLike dtype=FLOAT loses its dtype (it then follows its input, a FLOAT16
  ConstantOfShape: the case of an fp16 VAE encoder with a random node and no dtype); RandomNormal
  and the uniform ones get dtype=FLOAT16.

Then onnx.checker and strict shape inference (with type checks) run on the result.

    /usr/bin/python3 scripts/reference/parity/fp16.py SRC DST

SRC a model folder (every */model.onnx is converted, every other file copied) or one .onnx file.
"""
import os, shutil, sys
from collections import defaultdict
import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference, TensorProto

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)
HALF_MAX = 65504.0
# Inputs that stay float32 whatever the graph's type: op -> input indices.
FLOAT32_INPUTS = {'Resize': (1, 2), 'Upsample': (1,)}


def to_half(t):
    a = numpy_helper.to_array(t).astype(np.float32)
    a = np.where(np.isfinite(a), np.clip(a, -HALF_MAX, HALF_MAX), a).astype(np.float16)
    h = numpy_helper.from_array(a, t.name)
    t.CopyFrom(h)


def attr(node, name):
    return next((a for a in node.attribute if a.name == name), None)


def convert(model):
    g = model.graph
    inferred = shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*inferred.graph.value_info, *g.input, *g.output]}
    for t in g.initializer:
        types[t.name] = t.data_type
    const_nodes = {}
    for n in g.node:
        if n.op_type == 'Constant':
            types[n.output[0]] = attr(n, 'value').t.data_type
            const_nodes[n.output[0]] = n
    initializers = {t.name: t for t in g.initializer}
    consumers = defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n)

    # The float32 islands (graph nodes are in topological order).
    island, seeds, island_nodes = set(), set(), []
    for n in g.node:
        if n.op_type == 'Cast' and attr(n, 'to').i == F32:
            src = n.input[0]
            from_int = types.get(src) not in FLOATS
            softmax_only = consumers[n.output[0]] and all(c.op_type == 'Softmax' for c in consumers[n.output[0]])
            if (from_int or softmax_only) and src not in island:
                seeds.add(n.name)
                island.add(n.output[0])
            continue  # any other Cast ends an island: it becomes to=FLOAT16
        if n.op_type != 'Constant' and any(i in island for i in n.input):
            island_nodes.append(n)
            island.update(o for o in n.output if types.get(o) in FLOATS)

    # Constants read by island nodes stay float32 (copied when fp16 nodes read them too).
    keep = set()
    for n in island_nodes:
        for k, i in enumerate(n.input):
            if i in island or types.get(i) not in FLOATS:
                continue
            if i not in const_nodes and i not in initializers:
                raise SystemExit(f'{n.name}: input {i} is computed in float16 but the node is in a float32 island')
            others = [c for c in consumers[i] if c not in island_nodes]
            if others:
                copy = i + '_float32'
                if copy not in keep:
                    if i in initializers:
                        t = TensorProto(); t.CopyFrom(initializers[i]); t.name = copy; g.initializer.append(t)
                    else:
                        src = const_nodes[i]
                        c = helper.make_node('Constant', [], [copy], name=src.name + '_float32', value=attr(src, 'value').t)
                        g.node.insert(list(g.node).index(src) + 1, c)
                n.input[k] = copy
                keep.add(copy)
            else:
                keep.add(i)
    for n in g.node:
        for k in FLOAT32_INPUTS.get(n.op_type, ()):
            if k < len(n.input) and n.input[k]:
                if n.input[k] not in const_nodes and n.input[k] not in initializers:
                    raise SystemExit(f'{n.name}: input {k} is not a constant')
                keep.add(n.input[k])

    for t in g.initializer:
        if t.data_type == F32 and t.name not in keep:
            to_half(t)
    for n in g.node:
        if n.op_type == 'Constant':
            t = attr(n, 'value').t
            if t.data_type == F32 and n.output[0] not in keep:
                to_half(t)
        elif n.op_type == 'ConstantOfShape':
            a = attr(n, 'value')
            if a is not None and a.t.data_type == F32 and n.output[0] not in island:
                to_half(a.t)
        elif n.op_type == 'Cast':
            a = attr(n, 'to')
            if a.i == F32 and n.name not in seeds:
                a.i = F16
        elif n.op_type == 'RandomNormalLike' or n.op_type == 'RandomUniformLike':
            a = attr(n, 'dtype')
            if a is not None and a.i == F32:
                n.attribute.remove(a)
        elif n.op_type in ('RandomNormal', 'RandomUniform'):
            a = attr(n, 'dtype')
            if a is None or a.i == F32:
                if a is not None:
                    n.attribute.remove(a)
                n.attribute.append(helper.make_attribute('dtype', F16))
    for vi in [*g.input, *g.output]:
        if vi.type.tensor_type.elem_type == F32:
            vi.type.tensor_type.elem_type = F16
    del g.value_info[:]
    onnx.checker.check_model(model)
    model = shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model)
    # The value_info only checked the types; the exports as written carry none.
    del model.graph.value_info[:]
    return model, len(seeds), len(island_nodes)


def convert_file(src, dst):
    model, seeds, nodes = convert(onnx.load(src))
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    onnx.save(model, dst)
    print(f'{dst}: float16 ({seeds} float32 islands, {nodes} nodes in them)', flush=True)


if __name__ == '__main__':
    SRC, DST = sys.argv[1], sys.argv[2]
    if SRC.endswith('.onnx'):
        convert_file(SRC, DST)
    else:
        for root, _, files in sorted(os.walk(SRC)):
            for f in sorted(files):
                s = os.path.join(root, f)
                d = os.path.join(DST, os.path.relpath(s, SRC))
                if f == 'model.onnx':
                    convert_file(s, d)
                else:
                    os.makedirs(os.path.dirname(d), exist_ok=True)
                    shutil.copyfile(s, d)
