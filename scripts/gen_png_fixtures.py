#!/usr/bin/env python3
"""Writes the small PNG files that test/test_pipeline.c reads (test/fixtures/png/).

Pure Python (zlib and struct), so no imaging library is needed.  Regenerate with
    python3 scripts/gen_png_fixtures.py
and commit the files.  Every image's pixels follow a formula the test recomputes:
grey g(y, x) = 10 y + x, colour (r, g, b) = (10 y + x, 100 + x, 200 - y).

  gray8.png      4 x 3 grey, 8 bit
  rgb8.png       4 x 3 RGB, 8 bit
  rgba8.png      4 x 3 RGBA, alpha 255
  gray16.png     4 x 3 grey, 16 bit (sample v * 257, so 8 bits give back v)
  palette.png    4 x 3 with a palette of the 12 grey values
  interlaced.png 4 x 3 grey, Adam7 interlaced
  corrupt.png    gray8.png with its image data damaged (a bad CRC and zlib stream)
  truncated.png  gray8.png cut in the middle of its data
  bomb.png       a header claiming 20000 x 20000 pixels (over the 178,956,970 limit)
  forged.png     a header claiming 3000 x 3000 over 20 bytes of image data
  folder/        an ImageFolder: classes "circle" (3 images) and "square" (2), 6 x 5 grey
  folder_bad/    one class with a good image, a corrupt one and one of another size

It also writes the seed corpus of fuzz/fuzz_png.c (fuzz/corpus/png/): small
valid files of every colour type and bit depth, interlaced or not, with a
palette and transparency, gamma and text chunks.
"""
import os
import struct
import zlib

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'png')
CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fuzz', 'corpus', 'png')
H, W = 3, 4


def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)


def png(width, height, color_type, bit_depth, rows, palette=None, interlace=0, extra=b''):
    """rows: one bytes object per scanline of the raw samples (no filter byte);
    extra: chunks written before the image data."""
    ihdr = struct.pack('>IIBBBBB', width, height, bit_depth, color_type, 0, 0, interlace)
    out = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr)
    if palette:
        out += chunk(b'PLTE', b''.join(bytes(c) for c in palette))
    out += extra
    if interlace:
        raw = adam7(rows, width, height, len(rows[0]) // width)
    else:
        raw = b''.join(b'\x00' + r for r in rows)
    out += chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')
    return out


def adam7(rows, width, height, bpp=1):
    """The 7 passes of rows of bpp bytes per pixel, each line with filter 0."""
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = b''
    for x0, y0, dx, dy in passes:
        if x0 >= width or y0 >= height:
            continue
        for y in range(y0, height, dy):
            raw += b'\x00' + b''.join(rows[y][x * bpp:(x + 1) * bpp] for x in range(x0, width, dx))
    return raw


def grey(y, x):
    return 10 * y + x


def rgb(y, x):
    return (10 * y + x, 100 + x, 200 - y)


def packbits(values, depth):
    """A scanline of samples of depth 1, 2 or 4 bits, first sample in the high bits."""
    out, acc, n = bytearray(), 0, 0
    for v in values:
        acc = (acc << depth) | v
        n += depth
        if n == 8:
            out.append(acc)
            acc, n = 0, 0
    if n:
        out.append(acc << (8 - n))
    return bytes(out)


def corpus():
    """Seeds for fuzz/fuzz_png.c: 5 x 3 pictures in every format libpng reads."""
    w, h = 5, 3
    seeds = {}
    for depth in (1, 2, 4, 8, 16):
        top = (1 << depth) - 1
        vals = [[(y * w + x) % (top + 1) for x in range(w)] for y in range(h)]
        rows = [packbits(r, depth) if depth < 8 else b''.join(struct.pack('>H' if depth == 16 else 'B', v) for v in r)
                for r in vals]
        seeds['gray%d.png' % depth] = png(w, h, 0, depth, rows)
        if depth <= 8:
            pal = [(k * 50 % 256, k * 90 % 256, 255 - k) for k in range(top + 1)][:256]
            trns = chunk(b'tRNS', bytes(255 - 20 * k % 256 for k in range(min(len(pal), 4))))
            seeds['palette%d.png' % depth] = png(w, h, 3, depth, rows, palette=pal, extra=trns)
    for depth in (8, 16):
        fmt = 'B' if depth == 8 else '>H'
        scale = 1 if depth == 8 else 257

        def row(y, n):
            return b''.join(struct.pack(fmt, ((y * w + x) * 37 + c * 80) % 256 * scale) for x in range(w) for c in range(n))
        seeds['gray_alpha%d.png' % depth] = png(w, h, 4, depth, [row(y, 2) for y in range(h)])
        seeds['rgb%d.png' % depth] = png(w, h, 2, depth, [row(y, 3) for y in range(h)])
        seeds['rgba%d.png' % depth] = png(w, h, 6, depth, [row(y, 4) for y in range(h)])
        seeds['rgb%d_interlaced.png' % depth] = png(w, h, 2, depth, [row(y, 3) for y in range(h)], interlace=1)
    g8 = [bytes(grey(y, x) for x in range(w)) for y in range(h)]
    seeds['gray8_interlaced.png'] = png(w, h, 0, 8, g8, interlace=1)
    seeds['gray8_trns.png'] = png(w, h, 0, 8, g8, extra=chunk(b'tRNS', struct.pack('>H', 12)))
    seeds['gray8_gamma_text.png'] = png(w, h, 0, 8, g8, extra=chunk(b'gAMA', struct.pack('>I', 45455)) +
                                        chunk(b'tEXt', b'Comment\x00seed') + chunk(b'sRGB', b'\x00'))
    seeds['one_pixel.png'] = png(1, 1, 2, 8, [b'\x01\x02\x03'])
    for name, data in seeds.items():
        path = os.path.join(CORPUS, name)
        os.makedirs(CORPUS, exist_ok=True)
        with open(path, 'wb') as f:
            f.write(data)


def write(name, data):
    path = os.path.join(OUT, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)


def main():
    g8 = [bytes(grey(y, x) for x in range(W)) for y in range(H)]
    write('gray8.png', png(W, H, 0, 8, g8))
    write('rgb8.png', png(W, H, 2, 8, [bytes(v for x in range(W) for v in rgb(y, x)) for y in range(H)]))
    write('rgba8.png', png(W, H, 6, 8, [bytes(v for x in range(W) for v in rgb(y, x) + (255,)) for y in range(H)]))
    write('gray16.png', png(W, H, 0, 16, [b''.join(struct.pack('>H', grey(y, x) * 257) for x in range(W)) for y in range(H)]))
    values = sorted({grey(y, x) for y in range(H) for x in range(W)})
    pal = [(v, v, v) for v in values]
    write('palette.png', png(W, H, 3, 8, [bytes(values.index(grey(y, x)) for x in range(W)) for y in range(H)], palette=pal))
    write('interlaced.png', png(W, H, 0, 8, g8, interlace=1))
    good = png(W, H, 0, 8, g8)
    idat = good.index(b'IDAT')
    bad = bytearray(good)
    for k in range(idat + 6, idat + 12):
        bad[k] ^= 0x5a
    write('corrupt.png', bytes(bad))
    write('truncated.png', good[:idat + 10])
    for name, side in (('bomb.png', 20000), ('forged.png', 3000)):
        ihdr = chunk(b'IHDR', struct.pack('>IIBBBBB', side, side, 8, 0, 0, 0, 0))
        write(name, b'\x89PNG\r\n\x1a\n' + ihdr + chunk(b'IDAT', zlib.compress(b'\x00' * 8)) + chunk(b'IEND', b''))
    # ImageFolder: 6 x 5 grey pictures, pixel (y, x) = 40 k + 5 y + x for image k of the class
    for cls, count in (('circle', 3), ('square', 2)):
        for k in range(count):
            rows = [bytes((40 * k + 5 * y + x + (100 if cls == 'square' else 0)) for x in range(6)) for y in range(5)]
            write(os.path.join('folder', cls, 'img%d.png' % k), png(6, 5, 0, 8, rows))
    write(os.path.join('folder', 'square', 'notes.txt'), b'not an image\n')
    rows = [bytes(5 * y + x for x in range(6)) for y in range(5)]
    write(os.path.join('folder_bad', 'only', 'a_good.png'), png(6, 5, 0, 8, rows))
    write(os.path.join('folder_bad', 'only', 'b_corrupt.png'), bytes(bad))
    write(os.path.join('folder_bad', 'only', 'c_small.png'), png(W, H, 0, 8, g8))
    corpus()


if __name__ == '__main__':
    main()
