#!/usr/bin/env python3
"""Fails when a top-level module of src/ names a module of a higher layer, or when modules form a
cycle. The layers, from the leaves up, are the table below (the crate docs' "Layout" says the
same); a module may name modules of its own layer only where the table's SAME_LAYER allows it.

Reads the `crate::` paths of src/ (unit-test modules at the end of a file, `#[cfg(test)] mod ...`,
are left out: tests may reach anywhere). Usage: python3 tools/check_layers.py [SRC_DIR]

Also fails when generic code names a vendor: a vendor is a folder of src/vendors/, and no code
outside that folder (comments and tests aside) may say its name, save the registry's list in
src/vendors/mod.rs.
"""

import pathlib
import re
import sys

# Leaves first. A module may import only modules of lower layers (and the same-layer pairs below).
LAYERS = [
    ["secret", "domain", "clock", "quota", "dependency", "telemetry", "metrics", "pb"],
    ["number", "transport"],
    ["store"],
    ["providers"],
    ["sim", "budget"],
    ["vendors"],
    ["replicas"],
    ["engine"],
    ["messages"],
    ["webhooks"],
    ["auth", "jobs"],
    ["api"],
    ["console"],
    ["config"],
    ["server"],
    ["cli"],
]
# Same-layer imports that are allowed (none today: each layer's modules are independent).
SAME_LAYER: set[tuple[str, str]] = set()


def top(src: pathlib.Path, path: pathlib.Path):
    first = path.relative_to(src).parts[0]
    return None if first in ("lib.rs", "main.rs") else first.removesuffix(".rs")


def edges_of(src: pathlib.Path):
    modules = {p.name.removesuffix(".rs") for p in src.iterdir()} - {"lib", "main"}
    edges = {}
    for f in src.rglob("*.rs"):
        me = top(src, f)
        if me is None:
            continue
        text = f.read_text()
        test = re.search(r"^\s*#\[cfg\(test\)\]\s*\n\s*mod \w+", text, re.M)
        if test:
            text = text[: test.start()]
        text = re.sub(r"//.*", "", text)
        refs = set(re.findall(r"\bcrate::(\w+)", text))
        for block in re.findall(r"\buse crate::\{([^;]*)\}", text, re.S):
            refs |= set(re.findall(r"(?:^|[,{\s])(\w+)(?=::|\s*[,}]|\s*$)", block))
        for r in refs & modules:
            if r != me:
                edges.setdefault(me, set()).add(r)
    return modules, edges


def code_of(text: str) -> str:
    """The code of a file: no unit-test module at its end, no comments."""
    test = re.search(r"^\s*#\[cfg\(test\)\]\s*\n\s*mod \w+", text, re.M)
    if test:
        text = text[: test.start()]
    return re.sub(r"//.*", "", text)


def vendor_names(src: pathlib.Path) -> list[str]:
    """Places where generic code names a vendor."""
    vendors_dir = src / "vendors"
    if not vendors_dir.is_dir():
        return []
    names = sorted(p.name for p in vendors_dir.iterdir() if p.is_dir())
    if not names:
        return []
    pattern = re.compile(r"(?<![A-Za-z])(" + "|".join(names) + r")(?![A-Za-z])", re.I)
    problems = []
    for f in sorted(src.rglob("*.rs")):
        rel = f.relative_to(src)
        if rel.parts[0] == "vendors" and (len(rel.parts) > 2 or rel.name != "mod.rs"):
            continue  # the vendor's own folder
        if rel == pathlib.Path("vendors/mod.rs") or f.name == "tests.rs" or "tests" in rel.parts:
            continue  # the registry's one line per vendor; tests
        for number, line in enumerate(code_of(f.read_text()).splitlines(), 1):
            for match in pattern.finditer(line):
                problems.append(f"{rel}:{number} names the vendor {match.group(1)!r}")
    return problems


def main() -> int:
    src = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    modules, edges = edges_of(src)
    layer = {m: i for i, names in enumerate(LAYERS) for m in names}
    problems = []
    unplaced = sorted(m for m in modules if m not in layer)
    if unplaced:
        problems.append(f"modules missing from the layer table: {', '.join(unplaced)}")
    for a, targets in sorted(edges.items()):
        for b in sorted(targets):
            if a not in layer or b not in layer:
                continue
            if layer[b] > layer[a] or (layer[b] == layer[a] and (a, b) not in SAME_LAYER):
                problems.append(f"{a} (layer {layer[a]}) names {b} (layer {layer[b]})")
    # With every edge running down the table, no cycle is possible.
    print(f"layers: {' < '.join('/'.join(names) for names in LAYERS)}")
    print(f"modules {len(modules)}, edges {sum(len(v) for v in edges.values())}, "
          f"upward or sideways edges {len(problems) - bool(unplaced)}")
    named = vendor_names(src)
    print(f"places in generic code that name a vendor: {len(named)}")
    problems.extend(named)
    for p in problems:
        print(f"  {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
