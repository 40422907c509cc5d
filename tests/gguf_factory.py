"""Make broken or unusual GGUF files from a real one, for the bad-input tests."""

from __future__ import annotations

from pathlib import Path

import gguf


def copy_gguf(src: str | Path, dst: str | Path, *, drop_keys: set[str] = frozenset(), arch: str | None = None,
              drop_tensors: int = 0) -> Path:
    """Rewrite `src` to `dst` with the gguf package, optionally dropping metadata keys or tensors."""
    reader = gguf.GGUFReader(src)
    arch_name = arch or bytes(reader.fields["general.architecture"].parts[-1]).decode()
    writer = gguf.GGUFWriter(str(dst), arch=arch_name)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in drop_keys:
            continue
        value_type = field.types[0]
        if value_type == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == gguf.GGUFValueType.STRING:
                value = [bytes(field.parts[i]).decode("utf-8", "replace") for i in field.data]
            else:
                value = [field.parts[i].tolist()[0] for i in field.data]
            writer.add_key_value(key, value, value_type, sub_type=sub)
        elif value_type == gguf.GGUFValueType.STRING:
            writer.add_key_value(key, bytes(field.parts[-1]).decode("utf-8", "replace"), value_type)
        else:
            writer.add_key_value(key, field.parts[-1].tolist()[0], value_type)
    tensors = reader.tensors[: len(reader.tensors) - drop_tensors] if drop_tensors else reader.tensors
    for t in tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in tensors:
        writer.write_tensor_data(t.data)
    writer.close()
    return Path(dst)


def truncate(src: str | Path, dst: str | Path, keep_fraction: float = 0.5) -> Path:
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep_fraction)])
    return Path(dst)
