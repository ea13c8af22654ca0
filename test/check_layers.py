#!/usr/bin/env python3
"""check_layers.py - the library's layers go one way, and its files make no circles.

The library is built in layers, bottom to top (LAYERS below, the one copy of the
table: docs/design.md#layers and README.md show it and are checked against it).
A file may include headers of, and call functions defined in, its own layer or
lower ones only.  The umbrella header agrad/agrad.h is for users: no library
file includes it (each includes the narrowest public header it needs).

Checks, each printed as a TAP line:
  - includes: every `#include "..."` of the library's sources and public headers
    names a header of the same or a lower layer (failures give file:line and both
    layers);
  - symbols (from `nm` on the static library given as the first argument): no
    object refers to a function or variable defined in an object of a higher
    layer, and the file-level reference graph, a file's references to itself
    left out, has no cycle (each strongly connected component is reported with
    the symbols that make its edges); and a folder's private headers declare
    only functions and variables that folder defines;
  - the layer tables of docs/design.md and README.md match LAYERS, and the
    private headers column lists each folder's headers.

Run:  python3 test/check_layers.py [path/to/libagrad_internal.a]
      (meson test runs it with the built archive: test/meson.build)
Without the archive, or without nm, the symbol checks are skipped.
"""
import os
import re
import shutil
import subprocess
import sys

# (folder, public headers in include/agrad/), bottom layer first.  What each
# layer holds, and its private headers, are in docs/design.md#layers.
LAYERS = [
    ("core", ["core.h", "tensor.h"]),
    ("io", ["state.h"]),
    ("autograd", ["autograd.h", "trace.h"]),
    ("ops", ["ops.h", "linalg.h"]),
    ("nn", ["nn.h", "loss.h"]),
    ("optim", ["optim.h"]),
    ("data", ["data.h"]),
    ("dist", ["dist.h", "mpi.h"]),
    ("plot", ["plot.h"]),
    ("train", ["train.h"]),
]
UMBRELLA = "agrad.h"  # includes every public header; for users, above every layer

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
PUBLIC_DIR = os.path.join("include", "agrad")
FOLDERS = [folder for folder, _ in LAYERS]
RANK = {folder: i + 1 for i, folder in enumerate(FOLDERS)}
PUBLIC_LAYER = {h: folder for folder, headers in LAYERS for h in headers}
UMBRELLA_RANK = len(LAYERS) + 1

tests = []  # (ok, description, [diagnostic lines]) or (None, description, reason) for a skip


def check(ok, description, details=()):
    tests.append((ok, description, list(details)))


def skip(description, reason):
    tests.append((None, description, reason))


def layer_name(rank):
    return "umbrella agrad/agrad.h" if rank == UMBRELLA_RANK else f"{rank} {FOLDERS[rank - 1]}/"


def layer_of_path(rel):
    """The layer rank of a file given relative to ROOT, or None if it is in none."""
    parts = rel.split("/")
    if len(parts) == 3 and "/".join(parts[:2]) == PUBLIC_DIR:
        if parts[2] == UMBRELLA:
            return UMBRELLA_RANK
        return RANK.get(PUBLIC_LAYER.get(parts[2]))
    if len(parts) == 2 and parts[0] in RANK:
        return RANK[parts[0]]
    return None


def library_files():
    """Every .c and .h of the layer folders and every public header, relative to ROOT."""
    files = []
    for folder in FOLDERS + [PUBLIC_DIR]:
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            if name.endswith((".c", ".h")):
                files.append(f"{folder}/{name}")
    return files


def resolve(including, name):
    """The file `#include "name"` in `including` reads, as the compiler looks for it:
    the including file's folder, then -I include and -I . (test/meson.build)."""
    for base in (os.path.dirname(including), "include", ""):
        rel = os.path.normpath(os.path.join(base, name))
        if os.path.isfile(os.path.join(ROOT, rel)):
            return rel
    return None


INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def check_includes(files):
    bad = {folder: [] for folder in FOLDERS + ["public"]}
    for rel in files:
        own = layer_of_path(rel)
        where = "public" if rel.startswith(PUBLIC_DIR + "/") else rel.split("/")[0]
        if own is None:
            bad[where].append(f"{rel}: belongs to no layer (add it to LAYERS in test/check_layers.py)")
            continue
        with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                target = resolve(rel, m.group(1))
                if target is None:
                    bad[where].append(f"{rel}:{lineno}: includes \"{m.group(1)}\", which is no file")
                    continue
                rank = layer_of_path(target)
                if rank is None:
                    bad[where].append(f"{rel}:{lineno}: includes {target}, which belongs to no layer")
                elif rank > own:
                    bad[where].append(f"{rel}:{lineno}: layer {layer_name(own)} includes {target} "
                                      f"of higher layer {layer_name(rank)}")
    for folder in FOLDERS:
        check(not bad[folder], f"includes of {folder}/ stay in layer {RANK[folder]} or below", bad[folder])
    check(not bad["public"], "includes of include/agrad/ stay in each header's layer or below", bad["public"])


def nm_symbols(archive):
    """{object: (defined globals, undefined names)} from nm on the archive."""
    out = subprocess.run(["nm", "-A", archive], check=True, capture_output=True, text=True).stdout
    objects = {}
    for line in out.splitlines():
        # "archive:member.o:0000000000000080 T ag__alloc" or "archive:member.o:   U free"
        head, _, rest = line.rpartition(":")
        member = os.path.basename(head.split(":")[-1] if ":" in head else head)
        fields = rest.split()
        if len(fields) < 2:
            continue
        kind, name = fields[-2], fields[-1]
        defined, undefined = objects.setdefault(member, (set(), set()))
        if kind in ("U", "v", "w"):  # undefined (v, w: weak undefined)
            undefined.add(name)
        elif kind.isupper() or kind == "u":  # global definitions (W, V: weak; u: unique)
            defined.add(name)
    return objects


def strongly_connected(nodes, edges):
    """Tarjan's algorithm, iterative: the components of more than one node."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


# The files whose rows' derivative rules may call each other's public ops (above).
DERIVATIVE_FAMILIES = ["ops/unary.c", "ops/binary.c", "ops/ternary.c"]

OBJECTS_KNOWN = "every object of the archive is a source of a layer folder"
DECLARED_HERE = "private headers declare only what their own folder defines"


def check_symbols(archive, files):
    description = "no object refers to a symbol of a higher layer"
    cycles = "no circles between files (the file-level reference graph is acyclic)"
    nm = shutil.which("nm")
    if not archive or not nm:
        reason = "nm not found" if not nm else "no static library given"
        for name in (OBJECTS_KNOWN, description, cycles, DECLARED_HERE):
            skip(name, reason)
        return
    # meson names the object of core/alloc.c "core_alloc.c.o"
    source_of = {f.replace("/", "_") + ".o": f for f in files if f.endswith(".c")}
    objects = nm_symbols(archive)
    unknown = sorted(m for m in objects if m not in source_of)
    check(not unknown, OBJECTS_KNOWN,
          [f"{m}: no such source in {', '.join(FOLDERS)}" for m in unknown])
    definer = {}
    for member, (defined, _) in objects.items():
        for name in defined:
            definer.setdefault(name, member)
    edges = {}  # file -> {file: [symbols]}
    for member, (_, undefined) in objects.items():
        for name in undefined:
            other = definer.get(name)
            if other and other != member and member in source_of and other in source_of:
                edges.setdefault(source_of[member], {}).setdefault(source_of[other], []).append(name)
    upward = []
    for a in sorted(edges):
        for b in sorted(edges[a]):
            ra, rb = layer_of_path(a), layer_of_path(b)
            if rb > ra:
                upward.append(f"{a} (layer {layer_name(ra)}) refers to {', '.join(sorted(edges[a][b]))} "
                              f"defined in {b} (layer {layer_name(rb)})")
    check(not upward, description, upward)
    # The elementwise families' derivative rules (their rows' D(...) columns,
    # ops/partial.h) call each other's public ops: d sigmoid = y·(1 - y) is a mul,
    # d pow = y·log a a log.  Those references, public ag_ functions only, are the
    # mathematics of the rules, not a dependency of one file's code on another's,
    # and are left out of the circle check; any other reference between the files
    # still counts.
    for a in DERIVATIVE_FAMILIES:
        for b in DERIVATIVE_FAMILIES:
            if a != b and b in edges.get(a, {}) and all(n.startswith("ag_") and not n.startswith("ag__")
                                                         for n in edges[a][b]):
                del edges[a][b]
    details = []
    for component in strongly_connected(set(source_of.values()), edges):
        details.append("circle: " + " <-> ".join(component))
        for a in component:
            for b in sorted(edges.get(a, ())):
                if b in component:
                    details.append(f"  {a} -> {b}: {', '.join(sorted(edges[a][b]))}")
    check(not details, cycles, details)
    check_declarations(definer, source_of)


DECLARATION = re.compile(r"AG_HIDDEN\s+[^;{(]*?\b(ag_\w+)\s*[(;\[]")


def check_declarations(definer, source_of):
    """A private header declares what its own folder defines: a function or variable
    it names must be defined in an object of that folder (names that no object
    defines, such as those of a build option that is off, are passed over)."""
    wrong = []
    for folder in FOLDERS:
        for header in private_headers(folder):
            rel = f"{folder}/{header}"
            with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
                text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
            for name in DECLARATION.findall(text):
                member = definer.get(name)
                where = source_of.get(member) if member else None
                if where and not where.startswith(folder + "/"):
                    wrong.append(f"{rel} declares {name}, defined in {where}")
    check(not wrong, DECLARED_HERE, wrong)


def markdown_table(path, first_columns):
    """The rows (lists of cells) of the first table in path whose header starts with
    first_columns, with the header; None if there is none."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip().lower() for c in line.strip().strip("|").split("|")]
        if cells[:len(first_columns)] == first_columns:
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split("|")])
            return cells, rows
    return None


def names_in(cell, ending):
    """The backquoted names in a cell that end with ending ("/" for folders, ".h"
    for headers), sorted, trailing slashes dropped: "`core.h`, `tensor.h`"."""
    return sorted(n.rstrip("/") for n in re.findall(r"`([^`]+)`", cell) if n.endswith(ending))


def private_headers(folder):
    return sorted(n for n in os.listdir(os.path.join(ROOT, folder)) if n.endswith(".h"))


def check_table(path, with_private):
    found = markdown_table(path, ["layer", "folder"])
    if found is None:
        check(False, f"{path} shows the layer table", [f"{path}: no table with columns | layer | folder | ..."])
        return
    header, rows = found
    problems = []
    public_col = next((i for i, c in enumerate(header) if c.startswith("public header")), None)
    private_col = next((i for i, c in enumerate(header) if c.startswith("private header")), None)
    if public_col is None:
        problems.append(f"{path}: the layer table has no 'public headers' column")
    if with_private and private_col is None:
        problems.append(f"{path}: the layer table has no 'private headers' column")
    if len(rows) != len(LAYERS):
        problems.append(f"{path}: the layer table has {len(rows)} rows, LAYERS {len(LAYERS)}")
    for i, (folder, public) in enumerate(LAYERS):
        if i >= len(rows):
            break
        row = rows[i]
        cell = lambda col: row[col] if col is not None and col < len(row) else ""
        if cell(0) != str(i + 1) or names_in(cell(1), "/") != [folder]:
            problems.append(f"{path}: row {i + 1} is layer {cell(0)} {cell(1)}, expected {i + 1} `{folder}/`")
        if public_col is not None and names_in(cell(public_col), ".h") != sorted(public):
            problems.append(f"{path}: {folder}/ public headers {names_in(cell(public_col), '.h')}, "
                            f"expected {sorted(public)}")
        if with_private and private_col is not None:
            listed = names_in(cell(private_col), ".h")
            present = [f"{folder}/{h}" for h in private_headers(folder)]
            if listed != present:
                problems.append(f"{path}: {folder}/ private headers {listed}, the folder has {present}")
    check(not problems, f"{path}'s layer table matches the layers of test/check_layers.py", problems)


def main():
    archive = sys.argv[1] if len(sys.argv) > 1 else None
    files = library_files()
    check_includes(files)
    check_symbols(archive, files)
    check_table("docs/design.md", with_private=True)
    check_table("README.md", with_private=False)
    failures = 0
    for n, (ok, description, details) in enumerate(tests, 1):
        if ok is None:
            print(f"ok {n} - {description} # SKIP {details}")
            continue
        print(f"{'ok' if ok else 'not ok'} {n} - {description}")
        for line in details:
            print(f"#   {line}")
        failures += not ok
    print(f"1..{len(tests)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
