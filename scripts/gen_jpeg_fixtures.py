#!/usr/bin/env python3
"""Writes the small JPEG files that test/test_pipeline.c reads (test/fixtures/jpeg/)
and the seed corpus of fuzz/fuzz_jpeg.c (fuzz/corpus/jpeg/).

Encoded and decoded by PIL (Debian's python3-pil, on the same libjpeg-turbo that
agrad links), so the pixels PIL decodes are those agrad must give.  Regenerate with
    /usr/bin/python3 scripts/gen_jpeg_fixtures.py
and commit the files.

  gray.jpg            7 x 5 grey, baseline
  rgb.jpg             7 x 5 colour, 4:4:4, baseline
  rgb420.jpg          9 x 6 colour, 4:2:0 subsampling (odd width: partial blocks)
  progressive.jpg     7 x 5 colour, progressive
  cmyk.jpg            7 x 5 CMYK (Adobe): libjpeg cannot make RGB of it, an error
  truncated.jpg       rgb.jpg cut in the middle of its data
  corrupt.jpg         rgb.jpg with its Huffman tables damaged
  many_scans.jpg      progressive.jpg with its last scan repeated 600 times (PIL reads
                      it; agrad refuses more than 500 scans, as libjpeg-turbo's limit)
  expected.txt        per file: name C H W, then the C*H*W pixels ([C, H, W] order)
                      that PIL decodes (as RGB for colour files, L for grey)
  folder/             an ImageFolder of a PNG class and a JPEG class, 7 x 5 grey
"""
import io
import os
import struct
import zlib

from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
OUT = os.path.join(ROOT, 'test', 'fixtures', 'jpeg')
CORPUS = os.path.join(ROOT, 'fuzz', 'corpus', 'jpeg')


def picture(w, h, mode):
    img = Image.new(mode, (w, h))
    for y in range(h):
        for x in range(w):
            if mode == 'L':
                img.putpixel((x, y), (30 * y + 20 * x) % 256)
            elif mode == 'CMYK':
                img.putpixel((x, y), (20 * x, 30 * y, 100, 10))
            else:
                img.putpixel((x, y), ((30 * y + 20 * x) % 256, 200 - 25 * y, 40 + 30 * x))
    return img


def encode(img, **kw):
    b = io.BytesIO()
    img.save(b, 'JPEG', quality=90, **kw)
    return b.getvalue()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)


def png(width, height, rows):
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
    raw = b''.join(b'\x00' + r for r in rows)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')


def main():
    files = {
        'gray.jpg': encode(picture(7, 5, 'L')),
        'rgb.jpg': encode(picture(7, 5, 'RGB'), subsampling=0),
        'rgb420.jpg': encode(picture(9, 6, 'RGB'), subsampling=2),
        'progressive.jpg': encode(picture(7, 5, 'RGB'), subsampling=0, progressive=True),
        'cmyk.jpg': encode(picture(7, 5, 'CMYK')),
    }
    good = files['rgb.jpg']
    sos = good.index(b'\xff\xda')
    files['truncated.jpg'] = good[:sos + 30]
    dht = good.index(b'\xff\xc4')
    bad = bytearray(good)
    for k in range(dht + 5, dht + 21):  # the code-length counts of the first table
        bad[k] = 0xff
    files['corrupt.jpg'] = bytes(bad)
    prog = files['progressive.jpg']
    last_scan = prog[prog.rindex(b'\xff\xda'):-2]
    files['many_scans.jpg'] = prog[:-2] + last_scan * 600 + prog[-2:]
    lines = []
    for name, data in files.items():
        write(os.path.join(OUT, name), data)
        if name in ('cmyk.jpg', 'truncated.jpg', 'corrupt.jpg', 'many_scans.jpg'):
            continue
        img = Image.open(io.BytesIO(data))
        img = img.convert('L' if img.mode == 'L' else 'RGB')
        w, h = img.size
        bands = img.split()
        lines.append('%s %d %d %d' % (name, len(bands), h, w))
        lines.append(' '.join(str(v) for b in bands for v in b.getdata()))
    write(os.path.join(OUT, 'expected.txt'), ('\n'.join(lines) + '\n').encode())
    # ImageFolder with a PNG class and a JPEG class (pixel 30 y + 20 x, + 50 for the JPEG one)
    rows = [bytes((30 * y + 20 * x) % 256 for x in range(7)) for y in range(5)]
    write(os.path.join(OUT, 'folder', 'a_png', 'one.png'), png(7, 5, rows))
    write(os.path.join(OUT, 'folder', 'b_jpeg', 'two.jpg'), files['gray.jpg'])
    write(os.path.join(OUT, 'folder', 'b_jpeg', 'three.JPEG'), encode(picture(7, 5, 'RGB'), subsampling=0))
    # fuzz seeds: the good files, optimised Huffman tables, an EXIF segment, several MCUs
    seeds = {k: v for k, v in files.items() if k not in ('truncated.jpg', 'corrupt.jpg', 'many_scans.jpg')}
    seeds['large420.jpg'] = encode(picture(17, 9, 'RGB'), subsampling=2)
    seeds['optimized.jpg'] = encode(picture(7, 5, 'RGB'), optimize=True)
    seeds['exif.jpg'] = encode(picture(7, 5, 'L'), exif=b'Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00')
    seeds['gray_progressive.jpg'] = encode(picture(16, 16, 'L'), progressive=True)
    for name, data in seeds.items():
        write(os.path.join(CORPUS, name), data)


if __name__ == '__main__':
    main()
