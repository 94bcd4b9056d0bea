"""On-device augmentation: uint8 batches -> float images, the seed's flip/rotation, DiffAugment.

Every function takes its randomness as a tensor of uniforms `u` (one row per sample) drawn by the
caller from an explicit generator, so nothing here holds state, the same draws give the same images
(resume is exact) and the ops have fixed shapes (CUDA-graph friendly). Results follow the input's
device and dtype.

DiffAugment (Zhao et al. 2020) is applied to every image the discriminator sees, real and fake;
the policy string is a comma-separated subset of `color,translation,cutout`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SEED_UNIFORMS = 3          # flip, rotate-or-not, angle


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample (B,C,H,W) by per-sample 2x3 matrices (output -> input coordinates); zero padding."""
    grid = F.affine_grid(theta.float(), list(x.shape), align_corners=False)      # exact pixel centres
    out = F.grid_sample(x.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out.to(x.dtype)


def real_batch(u8: torch.Tensor, u: torch.Tensor, *, flip_p: float, rotate_p: float, rotate_deg: float,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B,H,W,3) uint8 -> (B,3,H,W) in [-1, 1], flipped with `flip_p` and rotated by up to
    `rotate_deg` degrees with `rotate_p` (torchvision's RandomRotation: nearest, black fill).

    The result keeps the NHWC memory layout (channels_last); call `.contiguous()` for NCHW.
    """
    x = u8.permute(0, 3, 1, 2).to(dtype) / 255
    flip = u[:, 0] < flip_p
    if rotate_p > 0 and rotate_deg > 0:
        angle = torch.where(u[:, 1] < rotate_p, (2 * u[:, 2] - 1) * rotate_deg, torch.zeros_like(u[:, 2]))
        a = torch.deg2rad(angle.to(torch.float32))
        sx = 1 - 2 * flip.to(torch.float32)
        cos, sin, zero = a.cos(), a.sin(), torch.zeros_like(a)
        theta = torch.stack([torch.stack([cos * sx, -sin, zero], 1), torch.stack([sin * sx, cos, zero], 1)], 1)
        x = _affine(x, theta)
    elif flip_p > 0:
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x * 2 - 1


def _color(x, u):
    x = x + (u[:, 0, None, None, None].to(x.dtype) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (u[:, 1, None, None, None].to(x.dtype) * 2) + mean
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (u[:, 2, None, None, None].to(x.dtype) + 0.5) + mean


def _translation(x, u, ratio: float = 0.125):
    _, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = (u[:, 0] * (2 * sy + 1)).floor().clamp(max=2 * sy) - sy           # integer shift in pixels
    dx = (u[:, 1] * (2 * sx + 1)).floor().clamp(max=2 * sx) - sx
    one, zero = torch.ones_like(dx), torch.zeros_like(dx)
    theta = torch.stack([torch.stack([one, zero, -2 * dx / w], 1), torch.stack([zero, one, -2 * dy / h], 1)], 1)
    return _affine(x, theta)


def _cutout(x, u, ratio: float = 0.5):
    _, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = (u[:, 0] * (h + 1 - ch % 2)).floor()[:, None, None]             # top-left corner - half size
    cx = (u[:, 1] * (w + 1 - cw % 2)).floor()[:, None, None]
    ys = torch.arange(h, device=x.device, dtype=u.dtype)[None, :, None]
    xs = torch.arange(w, device=x.device, dtype=u.dtype)[None, None, :]
    inside = (ys >= cy - ch // 2) & (ys < cy - ch // 2 + ch) & (xs >= cx - cw // 2) & (xs < cx - cw // 2 + cw)
    return x * (~inside)[:, None].to(x.dtype)


DIFF_OPS = {"color": (3, _color), "translation": (2, _translation), "cutout": (2, _cutout)}


def parse_policy(policy: str) -> list[str]:
    names = [p.strip() for p in policy.split(",") if p.strip()]
    bad = [p for p in names if p not in DIFF_OPS]
    if bad:
        raise ValueError(f"unknown DiffAugment op(s) {bad}; choose from {', '.join(DIFF_OPS)}")
    return names


def n_uniforms(policy: str) -> int:
    """How many uniforms per sample `diff_augment` needs for this policy."""
    return sum(DIFF_OPS[name][0] for name in parse_policy(policy))


def diff_augment(x: torch.Tensor, policy: str, u: torch.Tensor) -> torch.Tensor:
    """Differentiable augmentation of (B,3,H,W) images in [-1, 1]; `u` is (B, n_uniforms(policy))."""
    col = 0
    for name in parse_policy(policy):
        k, fn = DIFF_OPS[name]
        x = fn(x, u[:, col:col + k])
        col += k
    return x
