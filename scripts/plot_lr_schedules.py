"""Draws the learning-rate schedules of test/fixtures/lr_schedules.txt as one SVG
of small multiples, docs/optim-lr-schedules.svg, for docs/optim.md.

The curves are PyTorch's; test/test_lr_scheduler.c checks that agrad's
schedulers reproduce every point exactly, so they are agrad's too.  Each panel
shows the lr of group 0 (solid) and group 1 (dashed, base lr half or a fifth of
group 0's) over 100 steps; OneCycleLR's panels add the cycled momentum / beta1
(thin, right-hand scale).

Regenerate (plain Python 3, no packages needed):
    python3 scripts/plot_lr_schedules.py
"""
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "test", "fixtures", "lr_schedules.txt")
OUT = os.path.join(ROOT, "docs", "optim-lr-schedules.svg")

COLS, PW, PH, PAD, TOP = 3, 300, 150, 44, 30


def read():
    out, cur = [], None
    for line in open(SRC):
        w = line.split()
        if not w or line.startswith("#"):
            continue
        if w[0] == "sched":
            cur = {"name": w[1], "opt": w[2], "how": w[3], "makes": [], "rows": []}
            out.append(cur)
        elif w[0] == "make":
            cur["makes"].append(" ".join(w[1:]))
        elif w[0] in ("milestones", "metric"):
            cur[w[0]] = w[1:]
        elif w[0] == "end":
            cur = None
        elif cur is not None:
            cur["rows"].append([float(x) for x in w])
    return out


def path(xs, ys, x0, y0, lo, hi):
    span = hi - lo or 1.0
    pts = ["%.1f,%.1f" % (x0 + PW * x / (len(xs) - 1), y0 + PH - PH * (y - lo) / span) for x, y in zip(xs, ys)]
    return "M" + " L".join(pts)


def main():
    scheds = read()
    rows = (len(scheds) + COLS - 1) // COLS
    width, height = COLS * (PW + 2 * PAD), rows * (PH + PAD + TOP) + PAD
    svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">'
           % (width, height), '<rect width="100%" height="100%" fill="white"/>']
    for i, s in enumerate(scheds):
        x0 = (i % COLS) * (PW + 2 * PAD) + PAD
        y0 = (i // COLS) * (PH + PAD + TOP) + TOP + 10
        lr0 = [r[0] for r in s["rows"]]
        lr1 = [r[1] for r in s["rows"]]
        lo, hi = 0.0, max(lr0 + lr1)
        xs = list(range(len(lr0)))
        svg.append('<text x="%d" y="%d" font-weight="bold">%s</text>' % (x0, y0 - 16, s["name"]))
        svg.append('<text x="%d" y="%d" fill="#555">%s</text>'
                   % (x0, y0 - 4, "; ".join(s["makes"])[:52].replace("&", "&amp;")))
        svg.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#bbb"/>' % (x0, y0, PW, PH))
        svg.append('<text x="%d" y="%d" text-anchor="end">%.3g</text>' % (x0 - 3, y0 + 4, hi))
        svg.append('<text x="%d" y="%d" text-anchor="end">0</text>' % (x0 - 3, y0 + PH))
        svg.append('<text x="%d" y="%d" text-anchor="end">step 100</text>' % (x0 + PW, y0 + PH + 13))
        svg.append('<path d="%s" fill="none" stroke="#1f77b4" stroke-width="1.6"/>' % path(xs, lr0, x0, y0, lo, hi))
        svg.append('<path d="%s" fill="none" stroke="#d62728" stroke-width="1.2" stroke-dasharray="4,3"/>'
                   % path(xs, lr1, x0, y0, lo, hi))
        if s["name"].startswith("one_cycle"):
            mom = [r[2] for r in s["rows"]]
            mlo, mhi = min(mom), max(mom)
            svg.append('<path d="%s" fill="none" stroke="#2ca02c" stroke-width="0.8"/>' % path(xs, mom, x0, y0, mlo, mhi))
            svg.append('<text x="%d" y="%d" fill="#2ca02c">%.3g</text>' % (x0 + PW + 3, y0 + 4, mhi))
            svg.append('<text x="%d" y="%d" fill="#2ca02c">%.3g</text>' % (x0 + PW + 3, y0 + PH, mlo))
    svg.append("</svg>")
    with open(OUT, "w") as f:
        f.write("\n".join(svg) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
