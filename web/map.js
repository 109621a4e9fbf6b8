// A small map on a canvas: country outlines built into the server (/static/world.json,
// Natural Earth, public domain) in Web Mercator, markers, pan and zoom by pointer, wheel or
// keyboard, and "pick a point". Offline unless the operator configured a tile server
// (`serve.map_tiles`), whose tiles are then drawn under the outlines.
class HMMap {
  constructor(canvas, opts = {}) {
    this.c = canvas; this.ctx = canvas.getContext("2d");
    this.tiles = opts.tiles || null; this.onPick = opts.onPick || null; this.onMarker = opts.onMarker || null;
    this.zoom = 1; this.cx = 128; this.cy = 128; // centre in world pixels at zoom 0
    this.markers = []; this.picked = null; this.cache = new Map();
    canvas.tabIndex = 0;
    canvas.setAttribute("role", "application");
    canvas.setAttribute("aria-roledescription", "map");
    if (!canvas.getAttribute("aria-label")) canvas.setAttribute("aria-label", "Map. Arrow keys pan, plus and minus zoom" + (this.onPick ? ", Enter picks the centre." : "."));
    let drag = null;
    canvas.addEventListener("pointerdown", e => { drag = { x: e.clientX, y: e.clientY, cx: this.cx, cy: this.cy, moved: false }; canvas.setPointerCapture(e.pointerId); });
    canvas.addEventListener("pointermove", e => {
      if (!drag) return;
      const s = this.scale(), dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 4) drag.moved = true;
      this.cx = drag.cx - dx / s; this.cy = drag.cy - dy / s; this.draw();
    });
    canvas.addEventListener("pointerup", e => {
      const d = drag; drag = null;
      if (!d || d.moved) return;
      const r = canvas.getBoundingClientRect();
      const [x, y] = [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
      const hit = this.clusters().find(c => Math.hypot(c.x - x, c.y - y) < 12);
      if (hit && hit.members.length > 1 && hit.members[0].label && this.zoom < 18) {
        const [lat, lon] = this.toLatLon(hit.x, hit.y); const [px, py] = HMMap.project(lat, lon);
        this.cx = px; this.cy = py; this.zoomBy(4); return;
      }
      if (hit && this.onMarker) { this.onMarker(hit.members[0]); return; }
      if (this.onPick) this.pick(...this.toLatLon(x, y));
    });
    canvas.addEventListener("wheel", e => { e.preventDefault(); this.zoomBy(e.deltaY < 0 ? 1.5 : 1 / 1.5); }, { passive: false });
    canvas.addEventListener("keydown", e => {
      const step = 60 / this.scale();
      const k = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[e.key];
      if (k) { this.cx += k[0]; this.cy += k[1]; this.draw(); e.preventDefault(); }
      else if (e.key === "+" || e.key === "=") { this.zoomBy(1.5); e.preventDefault(); }
      else if (e.key === "-") { this.zoomBy(1 / 1.5); e.preventDefault(); }
      else if (e.key === "Enter" && this.onPick) { this.pick(...this.toLatLon(this.c.width / 2, this.c.height / 2)); e.preventDefault(); }
    });
    HMMap.world().then(() => this.draw());
  }
  static world() {
    if (!HMMap._world) HMMap._world = fetch("/static/world.json").then(r => r.json()).then(w => {
      // Projected once, to world pixels at zoom 0.
      HMMap.arcs = w.arcs.map(a => { const out = new Float32Array(a.length); for (let i = 0; i < a.length; i += 2) { const [x, y] = HMMap.project(a[i + 1] * w.unit, a[i] * w.unit); out[i] = x; out[i + 1] = y; } return out; });
    });
    return HMMap._world;
  }
  static project(lat, lon) {
    const s = Math.sin(Math.max(-85, Math.min(85, lat)) * Math.PI / 180);
    return [(lon + 180) / 360 * 256, (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * 256];
  }
  scale() { return Math.pow(2, this.zoom); }
  toScreen(lat, lon) { const [x, y] = HMMap.project(lat, lon), s = this.scale(); return [(x - this.cx) * s + this.c.width / 2, (y - this.cy) * s + this.c.height / 2]; }
  toLatLon(sx, sy) {
    const s = this.scale(), x = (sx - this.c.width / 2) / s + this.cx, y = (sy - this.c.height / 2) / s + this.cy;
    const n = Math.PI - 2 * Math.PI * y / 256;
    return [Math.round(180 / Math.PI * Math.atan(Math.sinh(n)) * 1e4) / 1e4, Math.round((x / 256 * 360 - 180) * 1e4) / 1e4];
  }
  zoomBy(f) { this.zoom = Math.max(0, Math.min(18, this.zoom + Math.log2(f))); this.draw(); }
  pick(lat, lon) { this.picked = { lat, lon }; this.draw(); this.onPick(lat, lon); }
  setMarkers(ms) { this.markers = ms.filter(m => m.lat != null && m.lon != null); this.fit(); }
  fit() {
    const pts = this.markers.map(m => HMMap.project(m.lat, m.lon));
    if (!pts.length) { this.zoom = 1; this.cx = 128; this.cy = 128; this.draw(); return; }
    const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    this.cx = (x0 + x1) / 2; this.cy = (y0 + y1) / 2;
    const span = Math.max((x1 - x0) / (this.c.width - 60), (y1 - y0) / (this.c.height - 60), 1e-9);
    this.zoom = Math.max(1, Math.min(12, Math.log2(1 / span)));
    this.draw();
  }
  // Markers grouped where they would overlap on screen, in their order (rank first).
  clusters() {
    const out = [];
    for (const m of this.markers) {
      const [x, y] = this.toScreen(m.lat, m.lon);
      const near = out.find(c => Math.hypot(c.x - x, c.y - y) < (m.label ? 18 : 6));
      if (near) near.members.push(m); else out.push({ x, y, members: [m] });
    }
    return out;
  }
  drawTiles() {
    const tz = Math.max(0, Math.min(19, Math.round(this.zoom))), n = Math.pow(2, tz), size = 256 * Math.pow(2, this.zoom - tz);
    const [ox, oy] = [this.c.width / 2 - this.cx * this.scale(), this.c.height / 2 - this.cy * this.scale()];
    for (let tx = Math.floor(-ox / size); tx * size + ox < this.c.width; tx++) {
      for (let ty = Math.max(0, Math.floor(-oy / size)); ty < n && ty * size + oy < this.c.height; ty++) {
        const url = this.tiles.replace("{z}", tz).replace("{x}", ((tx % n) + n) % n).replace("{y}", ty);
        let img = this.cache.get(url);
        if (!img) { img = new Image(); img.crossOrigin = "anonymous"; img.onload = () => this.draw(); img.src = url; this.cache.set(url, img); }
        if (img.complete && img.naturalWidth) this.ctx.drawImage(img, tx * size + ox, ty * size + oy, size + 0.5, size + 0.5);
      }
    }
  }
  draw() {
    const g = this.ctx, s = this.scale(), w = this.c.width, h = this.c.height;
    g.fillStyle = "#dbe9f4"; g.fillRect(0, 0, w, h);
    if (this.tiles) this.drawTiles();
    if (HMMap.arcs) {
      g.strokeStyle = "#49606e"; g.lineWidth = 1; g.beginPath();
      const ox = w / 2 - this.cx * s, oy = h / 2 - this.cy * s;
      // An outline that crosses the antimeridian jumps across the world: lifted, not drawn.
      for (const a of HMMap.arcs) {
        g.moveTo(a[0] * s + ox, a[1] * s + oy);
        for (let i = 2; i < a.length; i += 2) {
          if (Math.abs(a[i] - a[i - 2]) > 128) g.moveTo(a[i] * s + ox, a[i + 1] * s + oy);
          else g.lineTo(a[i] * s + ox, a[i + 1] * s + oy);
        }
      }
      g.stroke();
    }
    g.font = "bold 12px system-ui, sans-serif"; g.textAlign = "center"; g.textBaseline = "middle";
    // Markers that would overlap are drawn as one, the best ranked on top, with how many
    // more it hides ("+3"); clicking such a cluster zooms in on it.
    for (const cl of [...this.clusters()].reverse()) {
      const m = cl.members[0], [x, y] = [cl.x, cl.y];
      g.fillStyle = m.color || "#b3261e"; g.beginPath(); g.arc(x, y, m.label ? 10 : 4, 0, 2 * Math.PI); g.fill();
      if (m.label) { g.fillStyle = "#fff"; g.fillText(m.label, x, y + 0.5); }
      if (cl.members.length > 1 && m.label) {
        const t = "+" + (cl.members.length - 1);
        g.fillStyle = "#fff"; g.strokeStyle = "#333"; g.lineWidth = 1; g.beginPath(); g.arc(x + 12, y - 9, 8, 0, 2 * Math.PI); g.fill(); g.stroke();
        g.fillStyle = "#111"; g.font = "bold 10px system-ui, sans-serif"; g.fillText(t, x + 12, y - 8.5); g.font = "bold 12px system-ui, sans-serif";
      }
    }
    if (this.picked) {
      const [x, y] = this.toScreen(this.picked.lat, this.picked.lon);
      g.strokeStyle = "#000"; g.lineWidth = 2; g.beginPath(); g.moveTo(x - 9, y); g.lineTo(x + 9, y); g.moveTo(x, y - 9); g.lineTo(x, y + 9); g.stroke();
    }
    if (this.onPick && document.activeElement === this.c) { g.strokeStyle = "#000"; g.strokeRect(w / 2 - 6, h / 2 - 6, 12, 12); }
    g.fillStyle = "#333"; g.font = "10px system-ui, sans-serif"; g.textAlign = "right"; g.textBaseline = "bottom";
    g.fillText(this.tiles ? "tiles: operator's server · outlines: Natural Earth" : "outlines: Natural Earth (public domain)", w - 4, h - 2);
  }
}
