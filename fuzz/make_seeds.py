"""Writes small seed inputs for the checkpoint fuzz targets (no torch needed).

    python3 fuzz/make_seeds.py fuzz/corpus

makes corpus/read_checkpoint/*.pt (tiny torch.save-style zips) and
corpus/unpickle/*.pkl (their pickles), next to which the real fixtures
(../shared/fixtures/*.pt and their data.pkl) are worth adding.
"""

import collections
import io
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path


def fake(module, name, base=object, attrs=None):
    """A class or function that pickles as `module.name`."""
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    mod = sys.modules[module]
    obj = type(name, (base,), dict(attrs or {}))
    obj.__module__ = module
    obj.__qualname__ = name
    setattr(mod, name, obj)
    return obj


HalfStorage = fake("torch", "HalfStorage")
FloatStorage = fake("torch", "FloatStorage")
rebuild_tensor = fake("torch._utils", "_rebuild_tensor_v2")
rebuild_parameter = fake("torch._utils", "_rebuild_parameter")


class Storage:
    def __init__(self, kind, key, data):
        self.kind, self.key, self.data = kind, key, data


class Tensor:
    def __init__(self, storage, shape, stride, offset=0):
        self.args = (storage, offset, tuple(shape), tuple(stride), False, collections.OrderedDict())

    def __reduce_ex__(self, proto):
        return (rebuild_tensor, self.args)


class Parameter:
    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce_ex__(self, proto):
        return (rebuild_parameter, (self.tensor, True, collections.OrderedDict()))


def module(cls, params=None, buffers=None, children=None, **attrs):
    m = cls.__new__(cls)
    m.__dict__.update(
        training=False,
        _parameters=params or {},
        _buffers=buffers or {},
        _non_persistent_buffers_set=set(),
        _modules=children or {},
        **attrs,
    )
    return m


Module = fake("torch.nn.modules.module", "Module")
Sequential = fake("torch.nn.modules.container", "Sequential", Module)
Conv2d = fake("torch.nn.modules.conv", "Conv2d", Module)
BatchNorm2d = fake("torch.nn.modules.batchnorm", "BatchNorm2d", Module)
SiLU = fake("torch.nn.modules.activation", "SiLU", Module)
Conv = fake("models.common", "Conv", Module)
DetectionModel = fake("models.yolo", "DetectionModel", Module)


class Writer:
    def __init__(self):
        self.storages = []

    def storage(self, kind, values):
        fmt = {HalfStorage: "<e", FloatStorage: "<f"}[kind]
        data = b"".join(struct.pack(fmt, v) for v in values)
        s = Storage(kind, str(len(self.storages)), data)
        self.storages.append(s)
        return s

    def tensor(self, kind, shape, values, stride=None, offset=0):
        if stride is None:
            stride, acc = [], 1
            for n in reversed(shape):
                stride.insert(0, acc)
                acc *= n
        return Tensor(self.storage(kind, values), shape, stride, offset)

    def dumps(self, obj):
        buf = io.BytesIO()
        p = pickle.Pickler(buf, protocol=2)
        p.persistent_id = lambda o: (
            ("storage", o.kind, o.key, "cpu", len(o.data) // (2 if o.kind is HalfStorage else 4))
            if isinstance(o, Storage)
            else None
        )
        p.dump(obj)
        return buf.getvalue()

    def zip(self, folder, obj):
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
            z.writestr(f"{folder}/data.pkl", self.dumps(obj))
            z.writestr(f"{folder}/byteorder", "little")
            for s in self.storages:
                z.writestr(f"{folder}/data/{s.key}", s.data)
            z.writestr(f"{folder}/version", "3\n")
        return out.getvalue()


def tiny_model():
    w = Writer()
    conv = module(Conv2d, params={"weight": Parameter(w.tensor(HalfStorage, [2, 1, 1, 1], [0.5, -1.0])), "bias": None},
                  stride=(1, 1), padding=(0, 0))
    bn = module(BatchNorm2d, params={"weight": Parameter(w.tensor(HalfStorage, [2], [1.0, 2.0])),
                                     "bias": Parameter(w.tensor(HalfStorage, [2], [0.0, 0.1]))},
                buffers={"running_mean": w.tensor(HalfStorage, [2], [0.0, 0.0]),
                         "running_var": w.tensor(HalfStorage, [2], [1.0, 1.0]),
                         "num_batches_tracked": None},
                eps=1e-3, momentum=0.03)
    layer = module(Conv, children={"conv": conv, "bn": bn, "act": module(SiLU, inplace=True)}, i=0, f=-1, type="models.common.Conv", np=6)
    seq = module(Sequential, children={"0": layer})
    yaml = {"nc": 2, "depth_multiple": 1.0, "width_multiple": 1.0, "activation": "nn.ReLU()",
            "backbone": [[-1, 1, "Conv", [2, 1, 1]]], "head": [[-1, 1, "nn.Upsample", ["None", 2, "nearest"]]]}
    # A transposed view, to seed the strided copy.
    stride = w.tensor(FloatStorage, [3], [8.0, 16.0, 32.0])
    model = module(DetectionModel, children={"model": seq}, yaml=yaml, names={0: "a", 1: "b"},
                   stride=stride, save=[], inplace=True,
                   extra=w.tensor(FloatStorage, [2, 2], [0, 1, 2, 3, 4], stride=[1, 2], offset=1))
    ckpt = {"model": model, "optimizer": None, "ema": None, "epoch": -1, "date": None}
    return w, ckpt


def main(out):
    out = Path(out)
    (out / "read_checkpoint").mkdir(parents=True, exist_ok=True)
    (out / "unpickle").mkdir(parents=True, exist_ok=True)
    w, ckpt = tiny_model()
    (out / "read_checkpoint" / "tiny-model.pt").write_bytes(w.zip("tiny-model", ckpt))
    (out / "unpickle" / "tiny-model.pkl").write_bytes(w.dumps(ckpt))
    other = Writer()
    (out / "read_checkpoint" / "not-yolo.pt").write_bytes(other.zip("archive", {"a": 1, "b": [1.5, "x", None]}))
    for proto in range(6):
        data = pickle.dumps({"k": [1, 2 ** 70, -3, 1.5, "s", b"b", (1,), {2, 3}, frozenset(), True, None]}, protocol=proto)
        (out / "unpickle" / f"builtins-p{proto}.pkl").write_bytes(data)


if __name__ == "__main__":
    main(sys.argv[1])
