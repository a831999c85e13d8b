#!/usr/bin/env python3
"""Print every file-level import cycle in src/ (Python 3, standard library only).

Usage: scripts/import-cycles.py [--root DIR] [--only PREFIX] [--edges]

  --root DIR     the crate root holding src/ (default: the parent of this script's directory)
  --only PREFIX  report only cycles with a file under PREFIX (e.g. src/tls); exit status
                 follows the reported cycles
  --edges        also print every edge of the file graph

Exit status: 0 if no cycle is reported, 1 otherwise.

How the graph is built
----------------------
* Each src/**/*.rs file is a module: src/lib.rs is `crate`, src/a/mod.rs and src/a.rs are
  `crate::a`, src/a/b.rs is `crate::a::b`. Inline modules (`mod tests { ... }`) are tracked so
  that `super::` inside them means the file itself (such edges are dropped).
* Comments and string literals are removed first, so doc links do not count.
* An import is any `use` path (use trees such as `use crate::a::{b, c::{d as e}}` are
  expanded) and any path written in code that starts with `crate::`, `super::` or `self::`.
  In a `use`, a first segment naming a child module of the current module is taken as
  relative (`use client::Foo;` in tls/mod.rs).
* A path maps to the file of its longest prefix that is a module: `crate::tls::error::Reason`
  is an import of src/tls/error.rs, `crate::tls::Reason` one of src/tls/mod.rs.
* Re-exports: when the path goes on past that module with a name the module's file
  re-exports (`pub use error::Reason;`, `pub(crate) use error::{reason as openssl_reason}`),
  the import is followed to the file that the re-export names, repeatedly. So a child that
  imports its parent's re-export of a sibling depends on the sibling, not on the parent, and
  a mod.rs that re-exports its children is not in a cycle with them for that alone. A name
  the file does not re-export (something defined in it, or a glob) stays an import of that
  file: conservative, it can only add edges.
* `mod x;` declarations are not imports.

A cycle is a strongly connected component of two or more files.
"""

import argparse
import os
import re
import sys
from collections import defaultdict


def strip_comments_and_strings(src):
    """Blanks out comments, string and char literals (keeps newlines and lengths roughly)."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if src[i] == "\n":
                        out.append("\n")
                    i += 1
        elif c == "r" and re.match(r'r#*"', src[i:]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            m = re.match(r'r(#*)"', src[i:])
            end = '"' + m.group(1)
            j = src.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * src.count("\n", i, j))
            i = j
        elif c == "b" and src.startswith('b"', i) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            i += 1
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('""' + "\n" * src.count("\n", i, j))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a).
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", src[i:])
            if m:
                out.append("' '")
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_of(rel):
    """src/a/b.rs -> ('a', 'b'); src/a/mod.rs -> ('a',); src/lib.rs -> ()."""
    parts = rel.split(os.sep)[1:]
    parts[-1] = parts[-1][:-3]
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def parse_use_tree(s):
    """'a::{b, c::{d as e}, self}' -> [(['a','b'], None), (['a','c','d'], 'e'), (['a'], None)]."""
    s = re.sub(r"\s+as\s+", "@", s)
    s = re.sub(r"\s+", "", s)
    pos = 0

    def tree(prefix):
        nonlocal pos
        results = []
        segs = list(prefix)
        while pos < len(s):
            if s[pos] == "{":
                pos += 1
                while pos < len(s) and s[pos] != "}":
                    results.extend(tree(segs))
                    if pos < len(s) and s[pos] == ",":
                        pos += 1
                pos += 1
                return results
            m = re.match(r"(\w+|\*)", s[pos:])
            if not m:
                break
            word = m.group(1)
            pos += len(word)
            if s.startswith("::", pos):
                pos += 2
                if word != "self" or segs:
                    segs.append(word)
                else:
                    segs.append("self")
                continue
            alias = None
            if s.startswith("@", pos):
                m2 = re.match(r"@(\w+)", s[pos:])
                alias = m2.group(1)
                pos += len(m2.group(0))
            if word == "self" and segs:
                results.append((segs, alias or segs[-1]))
            else:
                results.append((segs + [word], alias or word))
            return results
        return results

    return tree([])


class Crate:
    def __init__(self, root):
        self.root = root
        self.files = {}  # module tuple -> rel path
        for dirpath, _, names in os.walk(os.path.join(root, "src")):
            for name in names:
                if name.endswith(".rs"):
                    rel = os.path.relpath(os.path.join(dirpath, name), root)
                    mod = module_of(rel)
                    # src/main.rs and src/bin/* are separate crates; lib.rs wins for ().
                    if mod in self.files and not rel.endswith("lib.rs"):
                        continue
                    self.files[mod] = rel
        self.text = {}
        for mod, rel in self.files.items():
            with open(os.path.join(root, rel), encoding="utf-8") as f:
                self.text[mod] = strip_comments_and_strings(f.read())
        self.reexports = {mod: self._reexports(mod) for mod in self.files}

    def children(self, mod):
        return {m[-1] for m in self.files if len(m) == len(mod) + 1 and m[: len(mod)] == mod}

    def absolute(self, mod, segs, in_use):
        """A path as written in module `mod` -> absolute segments (None if external)."""
        if not segs:
            return None
        segs = list(segs)
        base = None
        if segs[0] == "crate":
            base, segs = (), segs[1:]
        elif segs[0] in ("super", "self"):
            base = mod
            while segs and segs[0] in ("super", "self"):
                if segs[0] == "super":
                    base = base[:-1]
                segs = segs[1:]
        elif in_use and segs[0] in self.children(mod):
            base = mod
        else:
            return None
        return tuple(base) + tuple(segs)

    def _reexports(self, mod):
        """name -> absolute path, for every `pub use` / `pub(...) use` in the file."""
        table = {}
        for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", self.text[mod]):
            for segs, alias in parse_use_tree(m.group(1)):
                if segs[-1] == "*":
                    continue
                path = self.absolute(mod, segs, in_use=True)
                if path is not None:
                    table[alias] = path
        return table

    def resolve(self, path, seen=None):
        """Absolute path -> the file that defines it (following re-exports)."""
        seen = seen or set()
        k = len(path)
        while k >= 0 and tuple(path[:k]) not in self.files:
            k -= 1
        if k < 0:
            return None
        mod = tuple(path[:k])
        rest = path[k:]
        if rest and rest[0] in self.reexports.get(mod, {}) and (mod, rest[0]) not in seen:
            seen.add((mod, rest[0]))
            target = self.reexports[mod][rest[0]] + tuple(rest[1:])
            found = self.resolve(target, seen)
            if found is not None:
                return found
        return self.files[mod]

    def imports(self, mod):
        """(target file, how) for every import in the file of `mod`."""
        text = self.text[mod]
        out = []
        # Inline modules: the module path at each offset.
        spans = []  # (start, end, name)
        for m in re.finditer(r"\bmod\s+(\w+)\s*\{", text):
            depth, j = 1, m.end()
            while j < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            spans.append((m.start(), j, m.group(1)))

        def module_at(pos):
            inner = [name for (a, b, name) in spans if a <= pos < b]
            return mod + tuple(inner)

        for m in re.finditer(r"\buse\s+([^;]+);", text):
            here = module_at(m.start())
            for segs, _ in parse_use_tree(m.group(1)):
                if segs[-1] == "*":
                    segs = segs[:-1]
                path = self.absolute(here, segs, in_use=True)
                if path is not None:
                    out.append((path, "use " + "::".join(segs)))
        code = re.sub(r"\buse\s+[^;]+;", lambda u: " " * len(u.group(0)), text)
        for m in re.finditer(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)", code):
            here = module_at(m.start())
            segs = m.group(1).split("::")
            path = self.absolute(here, segs, in_use=False)
            if path is not None:
                out.append((path, m.group(1)))
        edges = []
        me = self.files[mod]
        for path, how in out:
            target = self.resolve(path)
            if target is not None and target != me:
                edges.append((target, how))
        return edges


def strongly_connected(graph):
    index, low, stack, on, result = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            result.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--only", default=None)
    ap.add_argument("--edges", action="store_true")
    args = ap.parse_args()

    crate = Crate(args.root)
    graph = defaultdict(set)
    why = defaultdict(list)
    for mod, rel in sorted(crate.files.items()):
        graph[rel]
        for target, how in crate.imports(mod):
            graph[rel].add(target)
            why[(rel, target)].append(how)
    if args.edges:
        for a in sorted(graph):
            for b in sorted(graph[a]):
                print(f"{a} -> {b}    ({', '.join(sorted(set(why[(a, b)])))})")

    cycles = [c for c in strongly_connected(graph) if len(c) > 1]
    if args.only:
        prefix = args.only.rstrip("/")
        cycles = [c for c in cycles if any(f == prefix or f.startswith(prefix + "/") for f in c)]
    for comp in cycles:
        print("cycle: " + " <-> ".join(comp))
        members = set(comp)
        for a in comp:
            for b in sorted(graph[a] & members):
                print(f"    {a} -> {b}    ({', '.join(sorted(set(why[(a, b)])))})")
    if cycles:
        print(f"{len(cycles)} import cycle(s)")
        return 1
    print("no import cycle" + (f" under {args.only}" if args.only else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
