"""Read legacy (pre-1.6, non-zip) `torch.save` checkpoints with numpy only.

The legacy format is a sequence of pickles: magic number, protocol version,
system info, the object itself (tensors refer to storages by persistent id),
the list of storage keys, then for each key an int64 element count followed by
the raw little-endian storage bytes.
"""
import collections
import pickle
import struct

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C

_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        self.dtype = np.dtype(_DTYPES[name])


class _Storage:
    def __init__(self, dtype, numel):
        self.dtype = dtype
        self.numel = numel
        self.data = None


class _TensorRef:
    """A tensor whose storage bytes are read after the main pickle."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self):
        item = self.storage.dtype.itemsize
        base = self.storage.data
        if not self.size:
            return base[self.offset].copy()
        return np.lib.stride_tricks.as_strided(
            base[self.offset:], shape=self.size, strides=[s * item for s in self.stride]
        ).copy()


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_args):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _TensorRef(storage, storage_offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_tensor":
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        kind = pid[0]
        if kind == "storage":
            storage_type, key, _location, numel, view = pid[1:6]
            if view is not None:
                raise pickle.UnpicklingError("storage views are not supported")
            if key not in self.storages:
                self.storages[key] = _Storage(storage_type.dtype, numel)
            return self.storages[key]
        if kind == "module":
            return pid[1]
        raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")


def load(path):
    """Return the checkpoint's state dict as {name: numpy array}."""
    with open(path, "rb") as f:
        if pickle.load(f) != MAGIC:
            raise ValueError(f"{path}: not a legacy torch checkpoint")
        pickle.load(f)  # protocol version
        pickle.load(f)  # sys info
        storages = {}
        obj = _Unpickler(f, storages).load()
        keys = pickle.load(f)
        for key in keys:
            st = storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            if numel != st.numel:
                raise ValueError(f"storage {key}: size {numel} != {st.numel}")
            raw = f.read(numel * st.dtype.itemsize)
            st.data = np.frombuffer(raw, dtype=st.dtype)
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    return collections.OrderedDict(
        (k, v.to_numpy()) for k, v in obj.items() if isinstance(v, _TensorRef)
    )
