"""Splats as the `.ply` files every 3DGS viewer reads (INRIA layout, binary little endian)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


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


def load_ply(path: Path) -> dict[str, torch.Tensor]:
    """Read back what `save_ply` (or another INRIA-layout writer with float properties) wrote."""
    with open(path, "rb") as handle:
        names, count = [], 0
        while (line := handle.readline().decode("ascii").strip()) != "end_header":
            parts = line.split()
            if parts[:2] == ["element", "vertex"]:
                count = int(parts[2])
            elif parts[:2] == ["property", "float"]:
                names.append(parts[2])
        data = np.frombuffer(handle.read(), dtype="<f4", count=count * len(names))
    table = dict(zip(names, data.reshape(count, len(names)).T, strict=True))

    def stack(*keys: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([table[k] for k in keys], axis=1).copy())

    params = {
        "means": stack("x", "y", "z"),
        "scales": stack("scale_0", "scale_1", "scale_2"),
        "quats": stack("rot_0", "rot_1", "rot_2", "rot_3"),
        "opacities": torch.from_numpy(table["opacity"].copy()),
        "sh0": stack("f_dc_0", "f_dc_1", "f_dc_2")[:, None, :],
    }
    rest = sorted((n for n in names if n.startswith("f_rest_")), key=lambda n: int(n[7:]))
    if rest:
        params["shN"] = stack(*rest).reshape(count, 3, -1).transpose(1, 2).contiguous()
    return params
