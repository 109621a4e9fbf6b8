"""Generates data-sample/: a small synthetic hotel-room set the project ships.

Six invented hotels, each with its own decor (wall colour and pattern, carpet, bed cover,
headboard, a signature painting, curtains); two rooms per hotel that share the decor but
differ in layout; four photos per room from different viewpoints and exposures; and one
query per hotel: a new viewpoint with a person-like figure standing in the room, and the
mask an investigator would paint over it. Everything is drawn here (numpy + Pillow), so
there is no licence question. Deterministic: same bytes every run.

    .cache/venv/bin/python scripts/data/make_data_sample.py
"""
import csv
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "data-sample")
W, H = 1024, 768

HOTELS = [
    # id, name, chain, address, city, country, lat, lon
    ("h-aurora", "Aurora Suites Denver", "Aurora", "1600 Glenarm Pl", "Denver", "US", 39.7447, -104.9903),
    ("h-pinecrest", "Pinecrest Inn", "", "2020 Arapahoe Ave", "Boulder", "US", 40.0150, -105.2705),
    ("h-harbor", "Harbor View Hotel", "Seaside", "401 Biscayne Blvd", "Miami", "US", 25.7781, -80.1880),
    ("h-lonestar", "Lone Star Lodge", "Seaside", "1200 Main St", "Houston", "US", 29.7545, -95.3650),
    ("h-desert", "Desert Rose Motel", "", "3570 Las Vegas Blvd", "Las Vegas", "US", 36.1147, -115.1728),
    ("h-maple", "Maple Leaf Hotel", "Aurora", "100 Front St W", "Toronto", "CA", 43.6453, -79.3806),
]


def hotel_style(i):
    rng = np.random.default_rng(1000 + i)
    col = lambda lo=40, hi=230: tuple(int(v) for v in rng.integers(lo, hi, 3))
    return {
        "wall": col(120, 240), "wall_pattern": ["plain", "stripes", "dots", "diamonds"][i % 4],
        "wall_accent": col(60, 200), "carpet": col(30, 160), "carpet_pattern": ["grid", "waves", "plain"][i % 3],
        "bed": col(150, 255), "bed_stripe": col(20, 200), "headboard": col(20, 150),
        "headboard_shape": ["rect", "arch", "panels"][i % 3], "curtain": col(20, 220), "lamp": col(150, 255),
        "art_seed": 500 + i,
    }


def painting(seed, w, h):
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(0, 255, 3)))
    d = ImageDraw.Draw(im)
    for _ in range(7):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(10, w // 2), y0 + rng.integers(10, h // 2)
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x1, y1], fill=c)
    return im


def room(i, room_no):
    s = hotel_style(i)
    rng = np.random.default_rng(i * 100 + room_no)
    im = Image.new("RGB", (W, H), s["wall"])
    d = ImageDraw.Draw(im)
    # wall pattern
    if s["wall_pattern"] == "stripes":
        for x in range(0, W, 48):
            d.rectangle([x, 0, x + 16, H], fill=s["wall_accent"])
    elif s["wall_pattern"] == "dots":
        for y in range(20, 480, 40):
            for x in range(20 + (y // 40 % 2) * 20, W, 40):
                d.ellipse([x - 5, y - 5, x + 5, y + 5], fill=s["wall_accent"])
    elif s["wall_pattern"] == "diamonds":
        for y in range(0, 480, 60):
            for x in range(0, W, 60):
                d.polygon([(x + 30, y), (x + 60, y + 30), (x + 30, y + 60), (x, y + 30)], outline=s["wall_accent"], width=3)
    # floor (carpet) as a trapezoid
    floor_top = 470
    d.polygon([(0, H), (W, H), (W - 120, floor_top), (120, floor_top)], fill=s["carpet"])
    if s["carpet_pattern"] == "grid":
        for k in range(0, W, 64):
            d.line([(120 + k * (W - 240) / W, floor_top), (k, H)], fill=tuple(max(0, c - 40) for c in s["carpet"]), width=3)
    elif s["carpet_pattern"] == "waves":
        for y in range(floor_top + 20, H, 30):
            pts = [(x, y + 8 * np.sin(x / 30.0)) for x in range(0, W, 8)]
            d.line(pts, fill=tuple(min(255, c + 50) for c in s["carpet"]), width=4)
    # side walls shading
    d.polygon([(0, 0), (120, 60), (120, floor_top), (0, H)], fill=tuple(int(c * 0.8) for c in s["wall"]))
    d.polygon([(W, 0), (W - 120, 60), (W - 120, floor_top), (W, H)], fill=tuple(int(c * 0.85) for c in s["wall"]))
    # layout differs per room: bed left or right, window opposite
    left = room_no % 2 == 1
    bx = 180 if left else 470
    wx = 700 if left else 170
    # window with curtains
    d.rectangle([wx, 90, wx + 180, 330], fill=(170, 210, 240))
    d.line([(wx + 90, 90), (wx + 90, 330)], fill=(240, 240, 240), width=6)
    d.rectangle([wx - 40, 70, wx + 10, 360], fill=s["curtain"])
    d.rectangle([wx + 170, 70, wx + 220, 360], fill=s["curtain"])
    # headboard
    hb = [bx, 250, bx + 380, 420]
    if s["headboard_shape"] == "arch":
        d.pieslice([bx, 200, bx + 380, 400], 180, 360, fill=s["headboard"])
        d.rectangle([bx, 300, bx + 380, 420], fill=s["headboard"])
    elif s["headboard_shape"] == "panels":
        for k in range(4):
            d.rectangle([bx + k * 95 + 5, 240, bx + k * 95 + 90, 420], fill=s["headboard"])
    else:
        d.rectangle(hb, fill=s["headboard"])
    # bed with a stripe and pillows
    d.polygon([(bx - 30, 620), (bx + 410, 620), (bx + 380, 400), (bx, 400)], fill=s["bed"])
    d.polygon([(bx - 18, 540), (bx + 398, 540), (bx + 392, 505), (bx - 10, 505)], fill=s["bed_stripe"])
    for px in (bx + 40, bx + 210):
        d.rounded_rectangle([px, 385, px + 130, 440], radius=18, fill=(250, 250, 248))
    # nightstand and lamp
    nx = bx + 420 if left else bx - 120
    d.rectangle([nx, 430, nx + 90, 540], fill=tuple(int(c * 0.6) for c in s["headboard"]))
    d.polygon([(nx + 20, 330), (nx + 70, 330), (nx + 85, 380), (nx + 5, 380)], fill=s["lamp"])
    d.rectangle([nx + 40, 380, nx + 50, 430], fill=(60, 60, 60))
    # the signature painting above the bed, and a room-specific small frame
    art = painting(s["art_seed"], 220, 130)
    im.paste(art, (bx + 80, 100))
    d.rectangle([bx + 76, 96, bx + 304, 234], outline=(40, 30, 20), width=4)
    small = painting(s["art_seed"] * 7 + room_no, 70, 90)
    im.paste(small, (60 if not left else W - 150, 160))
    # a door number plaque
    d.text((W // 2 - 10, 30), str(room_no), fill=(30, 30, 30))
    return im


def viewpoint(scene, rng, size=(640, 480)):
    zoom = rng.uniform(0.72, 0.92)
    cw, ch = int(W * zoom), int(H * zoom)
    x0 = int(rng.uniform(0, W - cw))
    y0 = int(rng.uniform(0, H - ch))
    im = scene.crop((x0, y0, x0 + cw, y0 + ch)).rotate(rng.uniform(-3, 3), resample=Image.BILINEAR, fillcolor=(90, 90, 90))
    im = im.resize(size, Image.BILINEAR)
    a = np.asarray(im, dtype=np.float32) * rng.uniform(0.85, 1.12) + rng.normal(0, 3, (size[1], size[0], 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))


def person(im, rng):
    """Pastes a person-like figure; returns the image and the mask of where it is."""
    w, h = im.size
    cx = int(rng.uniform(0.3, 0.7) * w)
    top = int(0.18 * h)
    mask = Image.new("L", im.size, 0)
    md = ImageDraw.Draw(mask)
    md.ellipse([cx - 35, top, cx + 35, top + 80], fill=255)  # head
    md.rounded_rectangle([cx - 75, top + 75, cx + 75, top + 320], radius=40, fill=255)  # body
    md.rectangle([cx - 60, top + 300, cx + 60, h], fill=255)  # legs
    clothes = Image.new("RGB", im.size, tuple(int(v) for v in rng.integers(10, 90, 3)))
    out = im.copy()
    out.paste(clothes, (0, 0), mask)
    # a painted-over mask is generous around the figure
    return out, mask.filter(ImageFilter.MaxFilter(15))


def main():
    os.makedirs(os.path.join(OUT, "images"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "queries"), exist_ok=True)
    with open(os.path.join(OUT, "hotels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "name", "chain", "address", "city", "country", "latitude", "longitude"])
        w.writerows(HOTELS)
    rows, qrows = [], []
    for i, h in enumerate(HOTELS):
        for room_no in (101 + i * 10, 204 + i * 10):
            scene = room(i, room_no)
            rng = np.random.default_rng(i * 7919 + room_no)
            for k in range(4):
                p = f"images/{h[0]}-{room_no}-{k}.jpg"
                viewpoint(scene, rng).save(os.path.join(OUT, p), quality=88)
                rows.append([p, h[0], str(room_no)])
        rng = np.random.default_rng(99 + i)
        room_no = 101 + i * 10
        q, m = person(viewpoint(room(i, room_no), rng), rng)
        qp, mp = f"queries/{h[0]}-query.jpg", f"queries/{h[0]}-query-mask.png"
        q.save(os.path.join(OUT, qp), quality=88)
        m.save(os.path.join(OUT, mp))
        qrows.append([qp, h[0], str(room_no), mp])
    with open(os.path.join(OUT, "images.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "hotel", "room"])
        w.writerows(rows)
    with open(os.path.join(OUT, "queries.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "hotel", "room", "mask"])
        w.writerows(qrows)
    print(f"data-sample: {len(rows)} photos, {len(qrows)} queries")


if __name__ == "__main__":
    main()
