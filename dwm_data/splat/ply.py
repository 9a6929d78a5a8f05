"""Splats as the `.ply` files every 3DGS viewer reads: written in the INRIA layout (binary little
endian, float32), read from any writer of that layout (INRIA, nerfstudio, gsplat, ours)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dwm_data.errors import DwmDataError


def _fields(rest: int) -> list[str]:
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(rest)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def save_ply(params: dict[str, torch.Tensor], path: Path) -> None:
    """The INRIA layout: higher SH bands stored channel-major (f_rest = shN[:, :, c] per c)."""
    p = {k: v.detach().cpu().float().numpy() for k, v in params.items()}
    count = len(p["means"])
    rest = (
        p["shN"].transpose(0, 2, 1).reshape(count, -1)
        if "shN" in p
        else np.zeros((count, 0), np.float32)
    )
    columns = np.concatenate(
        [
            p["means"],
            np.zeros((count, 3), np.float32),
            p["sh0"].reshape(count, 3),
            rest,
            p["opacities"][:, None],
            p["scales"],
            p["quats"],
        ],
        axis=1,
    ).astype("<f4")
    names = _fields(rest.shape[1])
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {count}\n"
        + "".join(f"property float {name}\n" for name in names)
        + "end_header\n"
    )
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(header.encode("ascii"))
        handle.write(columns.tobytes())
    tmp.replace(path)


# PLY scalar types (both spellings) -> numpy codes
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
SPLAT_FIELDS = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity")
SPLAT_FIELDS += ("scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")


@dataclass(frozen=True)
class PlyHeader:
    """What a `.ply` holds: its format, its elements in order as (name, count, properties),
    a list property as `None` in place of its scalar type, and where the data starts."""

    format: str
    elements: tuple[tuple[str, int, tuple[tuple[str, str | None], ...]], ...]
    data_offset: int

    def element(self, name: str) -> tuple[int, tuple[tuple[str, str | None], ...]] | None:
        return next(((n, p) for e, n, p in self.elements if e == name), None)

    @property
    def kind(self) -> str | None:
        """ "splat" (the INRIA 3DGS vertex fields, as INRIA, nerfstudio and gsplat export
        them), "mesh" (faces), or None (a point cloud, or something else)."""
        vertex = self.element("vertex")
        names = {name for name, _ in vertex[1]} if vertex else set()
        if vertex and set(SPLAT_FIELDS) <= names:
            return "splat"
        face = self.element("face")
        return "mesh" if vertex and face and face[0] > 0 else None


def read_header(path: Path) -> PlyHeader:
    """The header of a `.ply`, or a DwmDataError naming what is wrong with it."""
    elements: list[tuple[str, int, list]] = []
    fmt = ""
    with open(path, "rb") as handle:
        if handle.readline().strip() != b"ply":
            raise DwmDataError(f"{path} is not a PLY file (no 'ply' magic)")
        while True:
            raw = handle.readline()
            if not raw:
                raise DwmDataError(f"{path}: PLY header has no end_header")
            parts = raw.decode("ascii", "replace").split()
            if not parts or parts[0] in ("comment", "obj_info"):
                continue
            if parts[0] == "end_header":
                break
            if parts[0] == "format":
                fmt = parts[1]
            elif parts[0] == "element":
                elements.append((parts[1], int(parts[2]), []))
            elif parts[0] == "property" and elements:
                if parts[1] == "list":
                    elements[-1][2].append((parts[4], None))
                elif parts[1] in _PLY_TYPES:
                    elements[-1][2].append((parts[2], _PLY_TYPES[parts[1]]))
                else:
                    raise DwmDataError(f"{path}: unknown PLY property type {parts[1]}")
        offset = handle.tell()
    frozen = tuple((e, n, tuple(p)) for e, n, p in elements)
    return PlyHeader(fmt, frozen, offset)


def load_ply(path: Path) -> dict[str, torch.Tensor]:
    """A splat `.ply` in the INRIA 3DGS layout, as `save_ply`, the INRIA code, nerfstudio's
    `ns-export gaussian-splat` and gsplat write it: any scalar types, either byte order or
    ASCII, extra vertex properties (normals, colours) ignored, later elements (faces) skipped.
    Opacities stay logits and scales logs, as stored."""
    header = read_header(path)
    if header.kind != "splat":
        missing = sorted(
            set(SPLAT_FIELDS) - {n for n, _ in (header.element("vertex") or (0, ()))[1]}
        )
        raise DwmDataError(f"{path} is not a Gaussian splat (vertex lacks {', '.join(missing)})")
    if header.elements[0][0] != "vertex":
        raise DwmDataError(f"{path}: the vertex element must come first in a splat .ply")
    count, props = header.element("vertex")
    if any(kind is None for _, kind in props):
        raise DwmDataError(f"{path}: list properties on splat vertices are not supported")
    table = _vertex_table(path, header, count, props)

    def stack(*keys: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([table[k] for k in keys], axis=1).astype(np.float32))

    params = {
        "means": stack("x", "y", "z"),
        "scales": stack("scale_0", "scale_1", "scale_2"),
        "quats": stack("rot_0", "rot_1", "rot_2", "rot_3"),
        "opacities": torch.from_numpy(table["opacity"].astype(np.float32)),
        "sh0": stack("f_dc_0", "f_dc_1", "f_dc_2")[:, None, :],
    }
    names = [name for name, _ in props]
    rest = sorted((n for n in names if n.startswith("f_rest_")), key=lambda n: int(n[7:]))
    if rest:
        params["shN"] = stack(*rest).reshape(count, 3, -1).transpose(1, 2).contiguous()
    return params


def _vertex_table(
    path: Path, header: PlyHeader, count: int, props: tuple[tuple[str, str | None], ...]
) -> dict[str, np.ndarray]:
    if header.format == "ascii":
        with open(path, "rb") as handle:
            handle.seek(header.data_offset)
            rows = [handle.readline() for _ in range(count)]
        data = np.loadtxt(rows, dtype=np.float64, ndmin=2)
        if data.shape != (count, len(props)):
            raise DwmDataError(f"{path}: ASCII vertex rows do not match the header")
        return {name: data[:, i] for i, (name, _) in enumerate(props)}
    order = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(header.format)
    if order is None:
        raise DwmDataError(f"{path}: unknown PLY format {header.format!r}")
    dtype = np.dtype([(name, order + kind) for name, kind in props])
    with open(path, "rb") as handle:
        handle.seek(header.data_offset)
        data = np.fromfile(handle, dtype=dtype, count=count)
    if len(data) != count:
        raise DwmDataError(f"{path}: the file ends after {len(data)} of {count} vertices")
    return {name: data[name] for name in dtype.names}
