// Shared by the pages: the API key lives in sessionStorage (never in a URL), and every API
// call sends it as a bearer token.
const HM = {
  key() { return sessionStorage.getItem("hotelmatch-key") || ""; },
  setKey(k) { sessionStorage.setItem("hotelmatch-key", k.trim()); },
  headers() { return { "Authorization": "Bearer " + HM.key() }; },
  async json(method, path, body) {
    const r = await fetch(path, { method, headers: HM.headers(), body });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error((j.error && j.error.message) || ("HTTP " + r.status));
    return j;
  },
  async imageUrl(path) {
    const r = await fetch(path, { headers: HM.headers() });
    if (!r.ok) throw new Error("HTTP " + r.status);
    return URL.createObjectURL(await r.blob());
  },
  keyBox(onReady) {
    const box = document.getElementById("keybox");
    const input = box.querySelector("input");
    const show = () => { box.querySelector(".state").textContent = HM.key() ? "key set for this browser session" : "no key yet"; };
    box.querySelector("button").onclick = () => { HM.setKey(input.value); input.value = ""; show(); onReady && onReady(); };
    show();
  },
  esc(s) { return String(s ?? "").replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c])); },
};
