import { type FloatDType, problem } from './types.js';

/**
 * A restricted unpickler for the data.pkl of torch.save zip archives (pickle protocol 2, as
 * torch.save writes by default; a few protocol-4 opcodes are also understood).
 *
 * It never imports or calls anything. GLOBAL / STACK_GLOBAL resolve only names on a small
 * allowlist, to inert markers; REDUCE / NEWOBJ / BUILD act only on those markers, each in one
 * fixed, data-only way (an OrderedDict becomes a dict, _rebuild_tensor_v2 becomes a tensor
 * *description*, a ParameterDict becomes a record of its state). Every other global, callable,
 * class or opcode is refused with an error naming it.
 */

export type TorchDType = FloatDType | 'I64';

export class PyTuple {
  constructor(readonly items: readonly PyValue[]) {}
}
export class PyList {
  readonly items: PyValue[] = [];
}
export type DictKey = string | number | bigint | boolean | null;
export class PyDict {
  readonly map = new Map<DictKey, PyValue>();
  constructor(readonly kind: 'dict' | 'collections.OrderedDict') {}
}
export class PySet {
  constructor(readonly items: readonly PyValue[]) {}
}
/** An allowlisted global, as an inert marker. */
export class PyGlobal {
  constructor(
    readonly qualname: string,
    readonly kind: GlobalKind,
  ) {}
}
/** A persistent-id storage reference: ('storage', torch.<T>Storage, key, location, numel). */
export class StorageRef {
  constructor(
    readonly dtype: TorchDType,
    readonly key: string,
    readonly location: string,
    readonly numel: number,
  ) {}
}
/** What torch._utils._rebuild_tensor_v2 would build, as a description (no data read yet). */
export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly storageOffset: number,
    readonly size: readonly number[],
    readonly stride: readonly number[],
  ) {}
}
/** An nn.Module subclass instance (only torch.nn.ParameterDict is allowed): its pickled __dict__. */
export class ModuleRecord {
  state: PyDict | null = null;
  constructor(readonly qualname: string) {}
}

export type PyValue =
  null | boolean | number | bigint | string | PyTuple | PyList | PyDict | PySet | PyGlobal | StorageRef | TensorRef | ModuleRecord;

type GlobalKind =
  | { type: 'OrderedDict' }
  | { type: 'set' }
  | { type: 'rebuild_tensor_v2' }
  | { type: 'rebuild_parameter' }
  | { type: 'storage'; dtype: TorchDType }
  | { type: 'module' };

const ALLOWED_GLOBALS: ReadonlyMap<string, GlobalKind> = new Map<string, GlobalKind>([
  ['collections.OrderedDict', { type: 'OrderedDict' }],
  ['torch._utils._rebuild_tensor_v2', { type: 'rebuild_tensor_v2' }],
  ['torch._utils._rebuild_parameter', { type: 'rebuild_parameter' }],
  ['torch.FloatStorage', { type: 'storage', dtype: 'F32' }],
  ['torch.HalfStorage', { type: 'storage', dtype: 'F16' }],
  ['torch.BFloat16Storage', { type: 'storage', dtype: 'BF16' }],
  // Original textual-inversion files carry string_to_token {'*': tensor(265)} (an int64 tensor).
  ['torch.LongStorage', { type: 'storage', dtype: 'I64' }],
  // Original textual-inversion / early A1111 files pickle string_to_param as an nn.ParameterDict,
  // whose state holds a set() (_non_persistent_buffers_set).
  ['torch.nn.modules.container.ParameterDict', { type: 'module' }],
  ['builtins.set', { type: 'set' }],
]);

/** Python 2 module names that protocol < 3 pickles use (fix_imports), as Python 3 maps them. */
const MODULE_ALIASES: Record<string, string> = { __builtin__: 'builtins' };

const OPCODE_NAMES: Record<number, string> = {
  0x28: 'MARK',
  0x2e: 'STOP',
  0x30: 'POP',
  0x31: 'POP_MARK',
  0x32: 'DUP',
  0x46: 'FLOAT',
  0x49: 'INT',
  0x4a: 'BININT',
  0x4b: 'BININT1',
  0x4c: 'LONG',
  0x4d: 'BININT2',
  0x4e: 'NONE',
  0x50: 'PERSID',
  0x51: 'BINPERSID',
  0x52: 'REDUCE',
  0x53: 'STRING',
  0x54: 'BINSTRING',
  0x55: 'SHORT_BINSTRING',
  0x56: 'UNICODE',
  0x58: 'BINUNICODE',
  0x61: 'APPEND',
  0x62: 'BUILD',
  0x63: 'GLOBAL',
  0x64: 'DICT',
  0x7d: 'EMPTY_DICT',
  0x65: 'APPENDS',
  0x67: 'GET',
  0x68: 'BINGET',
  0x69: 'INST',
  0x6a: 'LONG_BINGET',
  0x6c: 'LIST',
  0x5d: 'EMPTY_LIST',
  0x6f: 'OBJ',
  0x70: 'PUT',
  0x71: 'BINPUT',
  0x72: 'LONG_BINPUT',
  0x73: 'SETITEM',
  0x74: 'TUPLE',
  0x29: 'EMPTY_TUPLE',
  0x75: 'SETITEMS',
  0x47: 'BINFLOAT',
  0x80: 'PROTO',
  0x81: 'NEWOBJ',
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
  0x85: 'TUPLE1',
  0x86: 'TUPLE2',
  0x87: 'TUPLE3',
  0x88: 'NEWTRUE',
  0x89: 'NEWFALSE',
  0x8a: 'LONG1',
  0x8b: 'LONG4',
  0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES',
  0x8c: 'SHORT_BINUNICODE',
  0x8d: 'BINUNICODE8',
  0x8e: 'BINBYTES8',
  0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS',
  0x91: 'FROZENSET',
  0x92: 'NEWOBJ_EX',
  0x93: 'STACK_GLOBAL',
  0x94: 'MEMOIZE',
  0x95: 'FRAME',
  0x96: 'BYTEARRAY8',
  0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
};

const MAX_GLOBAL_PART = 256;
const MAX_DIMS = 8;

const describe = (v: PyValue): string => {
  if (v === null) return 'None';
  if (typeof v !== 'object') return typeof v;
  if (v instanceof PyGlobal) return v.qualname;
  if (v instanceof ModuleRecord) return `${v.qualname} instance`;
  if (v instanceof PyDict) return v.kind;
  return v.constructor.name.replace(/^Py/, '').toLowerCase();
};

export function unpickle(data: Uint8Array): PyValue {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let pos = 0;
  let stack: PyValue[] = [];
  const metastack: PyValue[][] = [];
  const memo = new Map<number, PyValue>();

  const need = (n: number, what: string): void => {
    if (pos + n > data.byteLength) throw problem(`pickle data is truncated (reading ${what} at offset ${pos})`);
  };
  const u8 = (): number => {
    need(1, 'a byte');
    return data[pos++]!;
  };
  const u16 = (): number => {
    need(2, 'an integer');
    const v = view.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = (): number => {
    need(4, 'an integer');
    const v = view.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const bytes = (n: number, what: string): Uint8Array => {
    need(n, what);
    const b = data.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const utf8 = (b: Uint8Array): string => {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(b);
    } catch {
      throw problem('pickle string is not valid UTF-8');
    }
  };
  const line = (): string => {
    const start = pos;
    while (pos < data.byteLength && data[pos] !== 0x0a) {
      if (pos - start > MAX_GLOBAL_PART) throw problem('pickle GLOBAL name is too long');
      pos++;
    }
    if (pos >= data.byteLength) throw problem('pickle data is truncated (in a GLOBAL name)');
    const s = Buffer.from(data.buffer, data.byteOffset + start, pos - start).toString('latin1');
    pos++; // newline
    return s;
  };
  const pop = (): PyValue => {
    if (stack.length === 0) throw problem(`pickle stack underflow at offset ${pos - 1}`);
    return stack.pop()!;
  };
  const top = (): PyValue => {
    if (stack.length === 0) throw problem(`pickle stack underflow at offset ${pos - 1}`);
    return stack[stack.length - 1]!;
  };
  const popMark = (): PyValue[] => {
    const items = stack;
    const prev = metastack.pop();
    if (!prev) throw problem(`pickle MARK missing at offset ${pos - 1}`);
    stack = prev;
    return items;
  };
  const resolveGlobal = (module: string, name: string): PyGlobal => {
    const qualname = `${MODULE_ALIASES[module] ?? module}.${name}`;
    const kind = ALLOWED_GLOBALS.get(qualname);
    if (!kind) {
      const shown = `${module}.${name}`.replace(/[^\x20-\x7e]/g, '?');
      throw problem(`refused pickle global '${shown}': not on the allowlist of tensor-only globals`);
    }
    return new PyGlobal(qualname, kind);
  };
  const dictKey = (k: PyValue): DictKey => {
    if (k === null || typeof k !== 'object') return k;
    throw problem(`unsupported dict key of type ${describe(k)}`);
  };
  const setItem = (target: PyValue, k: PyValue, v: PyValue): void => {
    if (!(target instanceof PyDict)) throw problem(`pickle SETITEM(S) on a ${describe(target)}`);
    target.map.set(dictKey(k), v);
  };
  const int = (v: PyValue | undefined, what: string): number => {
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
    throw problem(`${what} must be a non-negative integer`);
  };
  const intTuple = (v: PyValue | undefined, what: string): number[] => {
    if (!(v instanceof PyTuple) || v.items.length > MAX_DIMS) throw problem(`${what} must be a tuple of at most ${MAX_DIMS} integers`);
    return v.items.map((x) => int(x, what));
  };

  const reduce = (fn: PyValue, args: PyValue): PyValue => {
    if (!(fn instanceof PyGlobal)) throw problem(`refused REDUCE: callable is a ${describe(fn)}, not an allowlisted global`);
    if (!(args instanceof PyTuple)) throw problem(`REDUCE of ${fn.qualname}: arguments are not a tuple`);
    const a = args.items;
    switch (fn.kind.type) {
      case 'OrderedDict':
        if (a.length !== 0) throw problem('REDUCE of collections.OrderedDict: only OrderedDict() is supported');
        return new PyDict('collections.OrderedDict');
      case 'set': {
        if (a.length === 0) return new PySet([]);
        const items = a[0];
        if (a.length !== 1 || !(items instanceof PyList)) throw problem('REDUCE of builtins.set: expected set(list)');
        items.items.forEach(dictKey); // hashable primitives only
        return new PySet([...items.items]);
      }
      case 'rebuild_tensor_v2': {
        // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        if (a.length !== 6 && a.length !== 7) throw problem(`_rebuild_tensor_v2 called with ${a.length} arguments`);
        const storage = a[0];
        if (!(storage instanceof StorageRef)) throw problem('_rebuild_tensor_v2: first argument is not a storage');
        const size = intTuple(a[2], 'tensor size');
        const stride = intTuple(a[3], 'tensor stride');
        if (size.length !== stride.length) throw problem('_rebuild_tensor_v2: size and stride differ in length');
        if (typeof a[4] !== 'boolean') throw problem('_rebuild_tensor_v2: requires_grad is not a bool');
        if (!(a[5] instanceof PyDict) || a[5].map.size !== 0) throw problem('_rebuild_tensor_v2: backward hooks are not supported');
        if (a.length === 7 && a[6] !== null && !(a[6] instanceof PyDict)) throw problem('_rebuild_tensor_v2: bad metadata');
        return new TensorRef(storage, int(a[1], 'storage offset'), size, stride);
      }
      case 'rebuild_parameter': {
        // (data, requires_grad, backward_hooks)
        if (a.length !== 3 || !(a[0] instanceof TensorRef) || typeof a[1] !== 'boolean') {
          throw problem('_rebuild_parameter: unexpected arguments');
        }
        if (!(a[2] instanceof PyDict) || a[2].map.size !== 0) throw problem('_rebuild_parameter: backward hooks are not supported');
        return a[0];
      }
      default:
        throw problem(`refused REDUCE of ${fn.qualname}: it is not callable here`);
    }
  };

  for (;;) {
    const at = pos;
    const op = u8();
    switch (op) {
      case 0x80: {
        // PROTO
        const v = u8();
        if (v < 2 || v > 5) throw problem(`pickle protocol ${v} is not supported (torch.save writes protocol 2)`);
        break;
      }
      case 0x95: // FRAME (protocol 4): an 8-byte length; framing is advisory
        bytes(8, 'a frame length');
        break;
      case 0x2e: {
        // STOP
        const result = pop();
        if (metastack.length !== 0) throw problem('pickle ends inside a MARK');
        return result;
      }
      case 0x28: // MARK
        metastack.push(stack);
        stack = [];
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new PyDict('dict'));
        break;
      case 0x5d: // EMPTY_LIST
        stack.push(new PyList());
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new PyTuple([]));
        break;
      case 0x8f: // EMPTY_SET
        stack.push(new PySet([]));
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof PySet)) throw problem(`pickle ADDITEMS on a ${describe(s)}`);
        items.forEach(dictKey);
        stack[stack.length - 1] = new PySet([...s.items, ...items]);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItem(top(), k, v);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        if (items.length % 2 !== 0) throw problem('pickle SETITEMS with an odd number of items');
        const target = top();
        for (let i = 0; i < items.length; i += 2) setItem(target, items[i]!, items[i + 1]!);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        const list = top();
        if (!(list instanceof PyList)) throw problem(`pickle APPEND on a ${describe(list)}`);
        list.items.push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const list = top();
        if (!(list instanceof PyList)) throw problem(`pickle APPENDS on a ${describe(list)}`);
        list.items.push(...items);
        break;
      }
      case 0x74: {
        // TUPLE (popMark replaces `stack`, so take the items first)
        const items = popMark();
        stack.push(new PyTuple(items));
        break;
      }
      case 0x85: // TUPLE1
        stack.push(new PyTuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        const a = pop();
        stack.push(new PyTuple([a, b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push(new PyTuple([a, b, c]));
        break;
      }
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: {
        // BININT
        need(4, 'BININT');
        stack.push(view.getInt32(pos, true));
        pos += 4;
        break;
      }
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: {
        // LONG1: little-endian two's complement
        const b = bytes(u8(), 'LONG1');
        let v = 0n;
        for (let i = b.byteLength - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
        if (b.byteLength > 0 && b[b.byteLength - 1]! & 0x80) v -= 1n << BigInt(8 * b.byteLength);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: {
        // BINFLOAT: big-endian double
        need(8, 'BINFLOAT');
        stack.push(view.getFloat64(pos, false));
        pos += 8;
        break;
      }
      case 0x58: // BINUNICODE
        stack.push(utf8(bytes(u32(), 'BINUNICODE')));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(utf8(bytes(u8(), 'SHORT_BINUNICODE')));
        break;
      case 0x55: {
        // SHORT_BINSTRING (Python 2 str; torch.load decodes it as ASCII/latin1)
        const b = bytes(u8(), 'SHORT_BINSTRING');
        stack.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1'));
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: {
        // LONG_BINGET
        const idx = op === 0x68 ? u8() : u32();
        if (!memo.has(idx)) throw problem(`pickle refers to memo entry ${idx}, which was never stored`);
        stack.push(memo.get(idx)!);
        break;
      }
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        const name = line();
        stack.push(resolveGlobal(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw problem('pickle STACK_GLOBAL without string names');
        stack.push(resolveGlobal(module, name));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        stack.push(reduce(fn, args));
        break;
      }
      case 0x81: {
        // NEWOBJ: cls.__new__(cls, *args)
        const args = pop();
        const cls = pop();
        if (!(cls instanceof PyGlobal) || cls.kind.type !== 'module') {
          throw problem(`refused NEWOBJ of ${describe(cls)}: only torch.nn.ParameterDict may be instantiated`);
        }
        if (!(args instanceof PyTuple) || args.items.length !== 0) throw problem(`NEWOBJ of ${cls.qualname} with arguments`);
        stack.push(new ModuleRecord(cls.qualname));
        break;
      }
      case 0x62: {
        // BUILD: inst.__setstate__(state) / inst.__dict__.update(state)
        const state = pop();
        const inst = top();
        if (inst instanceof ModuleRecord && inst.state === null && state instanceof PyDict) {
          inst.state = state;
        } else if (
          inst instanceof PyDict &&
          inst.kind === 'collections.OrderedDict' &&
          (state === null || (state instanceof PyDict && state.map.size === 0))
        ) {
          // OrderedDict with an empty __dict__: nothing to do.
        } else {
          throw problem(`refused BUILD on ${describe(inst)} with ${describe(state)} state`);
        }
        break;
      }
      case 0x51: {
        // BINPERSID: ('storage', storage_type, key, location, numel)
        const pid = pop();
        if (!(pid instanceof PyTuple) || pid.items.length !== 5 || pid.items[0] !== 'storage') {
          throw problem('refused persistent id: only torch storages are allowed');
        }
        const [, type, key, location, numel] = pid.items;
        if (!(type instanceof PyGlobal) || type.kind.type !== 'storage') {
          throw problem(`refused persistent id: storage type ${describe(type ?? null)} is not supported`);
        }
        if (typeof key !== 'string' || !/^\w{1,64}$/.test(key)) throw problem('persistent id has a bad storage key');
        if (typeof location !== 'string' || location.length > 64) throw problem('persistent id has a bad location');
        stack.push(new StorageRef(type.kind.dtype, key, location, int(numel, 'storage numel')));
        break;
      }
      default: {
        const name = OPCODE_NAMES[op];
        throw problem(
          `refused pickle opcode ${name ? `${name} ` : ''}(0x${op.toString(16).padStart(2, '0')}) at offset ${at}: not supported by the restricted unpickler`,
        );
      }
    }
  }
}
