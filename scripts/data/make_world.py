"""Writes web/world.json, the offline map's outlines: the coastlines and country borders of
Natural Earth (public domain) 1:50m, from the npm package world-atlas 2.0.2 (ISC), as arcs
of absolute [lon, lat] in hundredths of a degree, flattened, simplified to 0.03°. Every shared border is one arc,
drawn once. Run from the repository root with the package unpacked:

    curl -sSfL https://registry.npmjs.org/world-atlas/-/world-atlas-2.0.2.tgz | tar xz -C /tmp
    python3 scripts/data/make_world.py /tmp/package/countries-50m.json
"""
import json
import sys

# Hundredths of a degree: about 3 km, finer than the map can show below city scale.
TOLERANCE = 3


def simplify(pts, tol):
    """Douglas-Peucker: drops points within `tol` of the line through their neighbours."""
    if len(pts) < 3:
        return pts
    (x0, y0), (x1, y1) = pts[0], pts[-1]
    dx, dy = x1 - x0, y1 - y0
    norm = (dx * dx + dy * dy) ** 0.5
    best, at = -1.0, 0
    for i in range(1, len(pts) - 1):
        px, py = pts[i]
        d = abs(dy * (px - x0) - dx * (py - y0)) / norm if norm else ((px - x0) ** 2 + (py - y0) ** 2) ** 0.5
        if d > best:
            best, at = d, i
    if best <= tol:
        return [pts[0], pts[-1]]
    return simplify(pts[: at + 1], tol)[:-1] + simplify(pts[at:], tol)


topo = json.load(open(sys.argv[1]))
sx, sy = topo["transform"]["scale"]
tx, ty = topo["transform"]["translate"]
arcs = []
for arc in topo["arcs"]:
    x = y = 0
    flat, last = [], None
    for dx, dy in arc:
        x += dx
        y += dy
        p = (round((x * sx + tx) * 100), round((y * sy + ty) * 100))
        if p != last:
            flat.extend(p)
            last = p
    pts = simplify([(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)], TOLERANCE)
    if len(pts) >= 2:
        arcs.append([c for p in pts for c in p])
out = {
    "source": "Natural Earth 1:50m admin-0 countries (public domain), via world-atlas 2.0.2 (ISC, Michael Bostock)",
    "unit": 0.01,
    "arcs": arcs,
}
json.dump(out, open("web/world.json", "w"), separators=(",", ":"))
print(len(arcs), "arcs,", sum(len(a) for a in arcs) // 2, "points")
