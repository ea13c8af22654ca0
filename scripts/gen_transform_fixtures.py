#!/usr/bin/env python3
"""Writes test/fixtures/transforms.txt: what torchvision's Resize, CenterCrop and
RandomResizedCrop make of fixed float32 images, for test/test_pipeline.c.

torchvision is not installed here, so each case is computed as torchvision 0.14
computes it on a tensor: Resize is F.interpolate(mode, antialias=False,
align_corners=False) to the size of _compute_resized_output_size; CenterCrop is
its padding and round((H - h) / 2) offsets, transcribed from
torchvision/transforms/functional.py; RandomResizedCrop is resized_crop of the
window its get_params gives where that window does not depend on the draws (the
central fallback after 10 failed tries, and the whole image when scale and ratio
admit only it).

Regenerate with Debian's PyTorch (1.13):  /usr/bin/python3 scripts/gen_transform_fixtures.py

Format: one case per line,
    <kind> <args...> <C> <H> <W> <OH> <OW> <C*OH*OW output values>
kinds: resize <h> <w> <nearest>, resize_shorter <size> <nearest>, center_crop <h> <w>,
rrc <h> <w> <scale_lo> <scale_hi> <ratio_lo> <ratio_hi>.  The input is image(C, H, W):
value(c, y, x) = ((37 c + 11 y + 7 x) mod 23) / 23, which the test recomputes.
Values are written with repr() of float32 results.
"""
import math
import os

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "transforms.txt")


def image(C, H, W):
    t = torch.empty(C, H, W, dtype=torch.float32)
    for c in range(C):
        for y in range(H):
            for x in range(W):
                t[c, y, x] = ((37 * c + 11 * y + 7 * x) % 23) / 23
    return t


def resize(img, h, w, nearest):
    return F.interpolate(img[None], size=(h, w), mode="nearest" if nearest else "bilinear",
                         align_corners=None if nearest else False, antialias=False)[0]


def shorter_size(H, W, size):  # torchvision's _compute_resized_output_size for size=int
    short, long = (W, H) if W <= H else (H, W)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if W <= H else (new_long, new_short)
    return new_h, new_w


def center_crop(img, ch, cw):  # torchvision.transforms.functional.center_crop
    _, H, W = img.shape
    if cw > W or ch > H:
        left, top, right, bottom = [(cw - W) // 2 if cw > W else 0, (ch - H) // 2 if ch > H else 0,
                                    (cw - W + 1) // 2 if cw > W else 0, (ch - H + 1) // 2 if ch > H else 0]
        img = F.pad(img, [left, right, top, bottom], value=0)  # torch's order: last dim first
        _, H, W = img.shape
        if cw == W and ch == H:
            return img
    top = int(round((H - ch) / 2.0))
    left = int(round((W - cw) / 2.0))
    return img[:, top:top + ch, left:left + cw]


def fallback_window(H, W, ratio):  # RandomResizedCrop.get_params after 10 failed tries
    in_ratio = float(W) / float(H)
    if in_ratio < min(ratio):
        w = W
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = H
        w = int(round(h * max(ratio)))
    else:
        w, h = W, H
    return (H - h) // 2, (W - w) // 2, h, w


def fmt(t):
    return " ".join(repr(float(v)) for v in t.flatten().tolist())


def main():
    lines = []
    for (C, H, W) in [(3, 5, 7), (1, 6, 4)]:
        img = image(C, H, W)
        for (h, w) in [(3, 4), (8, 11), (H, W), (1, 1), (2 * H, 2 * W), (H + 1, 3)]:
            for nearest in (0, 1):
                out = resize(img, h, w, nearest)
                lines.append("resize %d %d %d %d %d %d %d %d %s" % (h, w, nearest, C, H, W, h, w, fmt(out)))
        for size in (4, 9, 1):
            for nearest in (0, 1):
                h, w = shorter_size(H, W, size)
                out = resize(img, h, w, nearest)
                lines.append("resize_shorter %d %d %d %d %d %d %d %s" % (size, nearest, C, H, W, h, w, fmt(out)))
        for (h, w) in [(3, 4), (2, 2), (H, W), (H + 3, W + 2), (4, W + 3), (1, 1)]:
            out = center_crop(img, h, w)
            lines.append("center_crop %d %d %d %d %d %d %d %s" % (h, w, C, H, W, h, w, fmt(out)))
    # RandomResizedCrop where every draw is bound to fail (scale 1, the image 4 x 16
    # far wider than 4/3, and 16 x 3 far taller than 3/4): the central fallback
    for (C, H, W, ratio) in [(3, 4, 16, (3 / 4, 4 / 3)), (1, 16, 3, (3 / 4, 4 / 3))]:
        img = image(C, H, W)
        top, left, h, w = fallback_window(H, W, ratio)
        out = resize(img[:, top:top + h, left:left + w], 6, 5, 0)
        lines.append("rrc 6 5 1 1 %r %r %d %d %d 6 5 %s" % (ratio[0], ratio[1], C, H, W, fmt(out)))
    # scale 1, ratio 1 on a square image: the first try takes the whole image
    img = image(3, 6, 6)
    lines.append("rrc 4 3 1 1 1 1 3 6 6 4 3 %s" % fmt(resize(img, 4, 3, 0)))
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
