"""Pictures the notebooks share: 2-D densities on a grid, samples, and image grids.

Every function draws on a matplotlib ``Axes`` it is given and labels its axes; none calls
``plt.show``. Densities are evaluated under ``torch.no_grad()`` in chunks, on the device
and in the dtype of the model's parameters.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

__all__ = ["grid_points", "density_on_grid", "plot_density", "plot_samples", "image_grid"]


def grid_points(lim: float = 4.0, n: int = 200) -> tuple[Tensor, Tensor, Tensor]:
    """The centres of ``n`` x ``n`` cells tiling [-lim, lim]²: ``(x [n], y [n], points [n², 2])``,
    ``points[i * n + j] = (x[j], y[i])`` (rows follow the second coordinate)."""
    width = 2 * lim / n
    x = -lim + width * (torch.arange(n, dtype=torch.float64) + 0.5)
    z2, z1 = torch.meshgrid(x, x, indexing="ij")
    return x, x.clone(), torch.stack([z1, z2], -1).reshape(-1, 2)


@torch.no_grad()
def density_on_grid(log_prob: Callable[[Tensor], Tensor], lim: float = 4.0, n: int = 200,
                    chunk: int = 20_000, like: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``log_prob`` on the grid of :func:`grid_points`: ``(x, y, log_density [n, n])``, in
    float64 on the CPU. Points go in chunks, in the dtype and on the device of ``like``
    (default float32, CPU)."""
    x, y, points = grid_points(lim, n)
    dtype = like.dtype if like is not None else torch.float32
    device = like.device if like is not None else "cpu"
    values = [log_prob(p.to(device=device, dtype=dtype)).double().cpu()
              for p in points.split(chunk)]
    return x, y, torch.cat(values).reshape(n, n)


def plot_density(ax, log_density: Tensor | Callable[[Tensor], Tensor], lim: float = 4.0,
                 n: int = 200, title: str = "", cmap: str = "viridis") -> None:
    """The density exp(log_density) over [-lim, lim]², from values ``[n, n]`` (rows follow
    z2) or from a function of points ``[m, 2]``."""
    if callable(log_density):
        _, _, log_density = density_on_grid(log_density, lim, n)
    ax.imshow(log_density.exp().numpy(), origin="lower", extent=(-lim, lim, -lim, lim),
              cmap=cmap, aspect="equal")
    ax.set(title=title, xlabel="$z_1$", ylabel="$z_2$")


def plot_samples(ax, samples: Tensor, lim: float = 4.0, bins: int = 100, title: str = "",
                 cmap: str = "viridis") -> None:
    """A 2-D histogram of ``samples`` ``[m, 2]`` over [-lim, lim]²."""
    s = samples.detach().double().cpu().numpy()
    ax.hist2d(s[:, 0], s[:, 1], bins=bins, range=[[-lim, lim], [-lim, lim]], cmap=cmap)
    ax.set(title=title, xlabel="$z_1$", ylabel="$z_2$", aspect="equal")


def image_grid(ax, images: Tensor, nrow: int, shape: tuple[int, int] = (28, 28),
               title: str = "", vmin: float = 0.0, vmax: float = 1.0) -> None:
    """A grid of images (``[m, H*W]`` or ``[m, 1, H, W]``), ``nrow`` to a row, one pixel of
    white between them."""
    h, w = shape
    images = images.detach().cpu().reshape(-1, h, w).float()
    ncol = math.ceil(len(images) / nrow)
    grid = torch.full((ncol * (h + 1) + 1, nrow * (w + 1) + 1), float(vmin))
    for i, image in enumerate(images):
        r, c = divmod(i, nrow)
        grid[1 + (h + 1) * r:(h + 1) * (r + 1), 1 + (w + 1) * c:(w + 1) * (c + 1)] = image
    ax.imshow(grid, cmap="gray_r", vmin=vmin, vmax=vmax)
    ax.set(title=title, xticks=[], yticks=[])
