// Shared by the pages: the API key lives in sessionStorage (never in a URL), and every API
// call sends it as a bearer token.
const HM = {
  key() { return sessionStorage.getItem("hotelmatch-key") || ""; },
  setKey(k) { sessionStorage.setItem("hotelmatch-key", k.trim()); },
  headers() { return { "Authorization": "Bearer " + HM.key() }; },
  async json(method, path, body) {
    const headers = HM.headers();
    if (body && !(body instanceof FormData) && typeof body !== "string") { body = JSON.stringify(body); headers["Content-Type"] = "application/json"; }
    const r = await fetch(path, { method, headers, body });
    const j = await r.json().catch(() => ({}));
    // The API's words for developers ("send an API key: Authorization: …") stay off the page.
    const words = { missing_key: "Enter your key first.", invalid_key: "This key is not valid (unknown or revoked)." };
    if (!r.ok) { const e = new Error((j.error && (words[j.error.code] || j.error.message)) || ("HTTP " + r.status)); e.status = r.status; e.code = j.error && j.error.code; throw e; }
    return j;
  },
  async imageUrl(path) {
    const r = await fetch(path, { headers: HM.headers() });
    if (!r.ok) throw new Error("HTTP " + r.status);
    return URL.createObjectURL(await r.blob());
  },
  // An article for a role's name: "an investigator", "an uploader", "an admin".
  roleName(r) { return (/^[aeiou]/.test(r) ? "an " : "a ") + r; },
  // The key box: the key is checked against the server when entered, and its role shown.
  // `roles` are the roles this page needs; `onReady(who)` runs once a fitting key is set.
  keyBox(roles, onReady) {
    const box = document.getElementById("keybox");
    const input = box.querySelector("input"), state = box.querySelector(".state");
    const check = async () => {
      if (!HM.key()) { state.textContent = "no key yet"; state.className = "state muted"; return; }
      state.textContent = "checking…"; state.className = "state muted";
      try {
        const who = await HM.json("GET", "/api/v1/whoami");
        if (!roles.includes(who.role)) {
          state.textContent = `This is ${HM.roleName(who.role)} key (${who.key_id}); this page needs ${roles.map(HM.roleName).join(" or ")} key.`;
          state.className = "state err"; return;
        }
        state.textContent = `Key ${who.key_id} · ${who.role}`; state.className = "state ok";
        HM.who = who; onReady && onReady(who);
      } catch (e) {
        state.textContent = e.status === 401 ? "This key is not valid (unknown or revoked)." : `Could not check the key: ${e.message}`;
        state.className = "state err";
      }
    };
    const use = () => { HM.setKey(input.value); input.value = ""; check(); };
    box.querySelector("button").onclick = use;
    // On a shared computer: forget the key and any photo kept for a reload.
    const forget = document.createElement("button"); forget.type = "button"; forget.textContent = "Forget key"; forget.className = "forget";
    forget.onclick = async () => {
      sessionStorage.removeItem("hotelmatch-key"); HM.who = null;
      try { const db = await HM.draftDb(); db.transaction("d", "readwrite").objectStore("d").clear(); } catch (e) { /* none kept */ }
      location.reload();
    };
    box.appendChild(forget);
    input.addEventListener("keydown", e => { if (e.key === "Enter") { e.preventDefault(); use(); } });
    check();
  },
  // The browser-side store of drafts (a photo and mask kept across a reload).
  draftDb() { return new Promise((ok, no) => { const r = indexedDB.open("hotelmatch-draft", 1); r.onupgradeneeded = () => r.result.createObjectStore("d"); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); }); },
  esc(s) { return String(s ?? "").replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c])); },
};
