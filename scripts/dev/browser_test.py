"""Browser tests of the web pages in real headless Chromium (Debian's chromium +
chromium-driver), against a real `hotelmatch serve` on 127.0.0.1 over data-sample.

Drives the pages as their users do: contributes a photo; as an investigator checks keys,
opens a case, paints a mask (with undo, redo and the eraser), searches, reads the top match,
its evidence and the map, opens the evidence pair and the hotel's photos, confirms the
hotel, exports the case report and opens it offline; then does the same on a 390-px phone
screen with the keyboard only; checks contrast and alt text; and renders the API reference.
Screenshots go to $OUT (default target/browser-test/). Exit code 0 on success; prints
'N passed, M failed'.

    .cache/venv/bin/python scripts/dev/browser_test.py
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("HOTELMATCH_BIN") or os.path.join(ROOT, "target", "release", "hotelmatch")
OUT = os.environ.get("OUT") or os.path.join(ROOT, "target", "browser-test")
QUERY = f"{ROOT}/data-sample/queries/h-lonestar-query.jpg"
QUERY_MASK = f"{ROOT}/data-sample/queries/h-lonestar-query-mask.png"

PAINTED_JS = "const c=document.getElementById('mask'),d=c.getContext('2d').getImageData(0,0,c.width,c.height).data;let n=0;for(let i=3;i<d.length;i+=4)if(d[i])n++;return n;"
# Every visible element with its own text: its colour's contrast against the first opaque
# background behind it (WCAG 2 relative luminance). Returns the failures.
CONTRAST_JS = """
const lum = c => { const m = c.match(/[\\d.]+/g).map(Number); return [0,1,2].map(i => { const v = m[i] / 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }).reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0); };
const bg = el => { for (let e = el; e; e = e.parentElement) { const c = getComputedStyle(e).backgroundColor; const m = c.match(/[\\d.]+/g); if (m && (m.length < 4 || +m[3] > 0.5)) return c; } return 'rgb(255,255,255)'; };
const bad = [];
for (const el of document.querySelectorAll('body *')) {
  if (!el.offsetParent || ['SCRIPT','STYLE','CANVAS','IMG','INPUT','SELECT','TEXTAREA','OPTION'].includes(el.tagName)) continue;
  const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  if (!own) continue;
  const a = lum(getComputedStyle(el).color), b = lum(bg(el));
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5) bad.push(el.tagName + '.' + el.className + ' ' + ratio.toFixed(2) + ' ' + el.textContent.trim().slice(0, 30));
}
return bad;
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args, data):
    return subprocess.run([BIN, "--data-dir", data, *args], check=True, capture_output=True, text=True).stdout


class Suite:
    def __init__(self, driver):
        self.driver, self.passed, self.failed = driver, 0, 0

    def check(self, ok, what):
        print(("ok" if ok else "FAILED") + ": " + what)
        self.passed, self.failed = self.passed + bool(ok), self.failed + (not ok)

    def shot(self, name):
        self.driver.save_screenshot(os.path.join(OUT, name))


def use_key(driver, wait, token, expect):
    box = driver.find_element(By.CSS_SELECTOR, "#keybox input")
    box.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#keybox button").click()
    return wait.until(lambda d: (t := d.find_element(By.CSS_SELECTOR, "#keybox .state").text) and expect in t and t)


def paint_over_person(driver, mask_el):
    """Drags the brush over the person: where the investigator's mask for this query is."""
    from PIL import Image
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", mask_el)
    ref = Image.open(QUERY_MASK)
    left, top, right, bottom = ref.getbbox()
    w, h = mask_el.size["width"], mask_el.size["height"]
    sx, sy = w / ref.width, h / ref.height
    to_offset = lambda x, y: (int(x * sx - w / 2), int(y * sy - h / 2))
    step = max(10, int(25 * ref.width / w / 2))
    chain = ActionChains(driver).move_to_element_with_offset(mask_el, *to_offset(left, top)).click_and_hold()
    for y in range(top, bottom, step):
        for x in range(left, right, step):
            chain = chain.move_to_element_with_offset(mask_el, *to_offset(x, y))
    chain.release().perform()


def main():
    os.makedirs(OUT, exist_ok=True)
    data = tempfile.mkdtemp(prefix="hm-browser-")
    run("import", "--hotels", f"{ROOT}/data-sample/hotels.csv", "--images", f"{ROOT}/data-sample/images.csv", data=data)
    uploader = json.loads(run("keys", "create", "--role", "uploader", data=data))["token"]
    investigator = json.loads(run("keys", "create", "--role", "investigator", data=data))["token"]
    port = free_port()
    server = subprocess.Popen([BIN, "--data-dir", data, "serve", "--bind", f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    driver, t = None, None
    try:
        for _ in range(300):  # bounded wait for the server
            try:
                urllib.request.urlopen(base + "/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        opts = webdriver.ChromeOptions()
        for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000",
                  f"--user-data-dir={tempfile.mkdtemp(prefix='hm-chrome-')}"]:
            opts.add_argument(a)
        opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)
        driver.set_page_load_timeout(30)
        driver.set_window_size(1400, 1000)
        wait = WebDriverWait(driver, 40)
        t = Suite(driver)

        # 1. Contribute a photo through the page.
        driver.get(base + "/contribute")
        state = use_key(driver, wait, uploader, "uploader")
        t.check("Key" in state, f"the contribute page checks the key when entered: {state!r}")
        driver.find_element(By.ID, "hotel").send_keys("Harbor")
        wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "#suggest div[data-id]"))).click()
        driver.find_element(By.ID, "room").send_keys("1207")
        driver.find_element(By.ID, "f0").send_keys(f"{ROOT}/data-sample/imagenet/espresso.jpg")
        driver.find_element(By.ID, "send").click()
        done = wait.until(EC.presence_of_element_located((By.ID, "done")))
        t.shot("contribute.png")
        t.check("received" in done.text, "contribute a photo through the page")

        # 2. Keys are checked when entered, with the role in words.
        driver.get(base + "/investigate")
        bad = use_key(driver, wait, "hm_nothere_0000", "not valid")
        t.check("not valid" in bad, f"a wrong key is reported at once: {bad!r}")
        wrong = use_key(driver, wait, uploader, "uploader")
        t.check("an uploader key" in wrong and "an investigator" in wrong, f"a key of another role says so in plain words: {wrong!r}")
        good = use_key(driver, wait, investigator, "investigator")
        t.check(good.startswith("Key ") and "investigator" in good, f"the investigator key is accepted with its role: {good!r}")

        # 3. Open a case; load the photo; paint, undo, redo, erase.
        driver.find_element(By.ID, "newcase").send_keys("Ad 2026-114")
        driver.find_element(By.ID, "mkcase").click()
        wait.until(lambda d: d.find_element(By.ID, "case").get_attribute("value") != "")
        case_id = driver.find_element(By.ID, "case").get_attribute("value")
        driver.find_element(By.ID, "file").send_keys(QUERY)
        wait.until(lambda d: d.execute_script("return document.getElementById('photo').height > 100"))
        mask_el = driver.find_element(By.ID, "mask")
        paint_over_person(driver, mask_el)
        painted = driver.execute_script(PAINTED_JS)
        driver.find_element(By.ID, "undo").click()
        undone = driver.execute_script(PAINTED_JS)
        driver.find_element(By.ID, "redo").click()
        redone = driver.execute_script(PAINTED_JS)
        t.check(painted > 1000 and undone == 0 and redone == painted, f"undo and redo the brush stroke ({painted} → {undone} → {redone} px)")
        driver.find_element(By.CSS_SELECTOR, "input[name=tool][value=eraser]").click()
        ActionChains(driver).move_to_element(mask_el).click().perform()
        erased = driver.execute_script(PAINTED_JS)
        driver.find_element(By.ID, "undo").click()
        driver.find_element(By.CSS_SELECTOR, "input[name=tool][value=brush]").click()
        after = driver.execute_script(PAINTED_JS)
        t.check(erased < painted and after == painted, f"the eraser removes paint, and undo brings it back ({painted} → {erased} → {after})")
        brush = driver.find_element(By.ID, "brushval").text
        t.check(brush.endswith("px"), f"the brush size is shown ({brush!r}) and its outline drawn on the overlay")

        # 4. Search into the case: the top match stands out, the query is shown once.
        driver.find_element(By.ID, "savecase").click()
        driver.find_element(By.ID, "go").click()
        top = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#top .card.top")))
        wait.until(lambda d: d.execute_script("return [...document.querySelectorAll('#top figure.stored canvas')].filter(c => c.width > 0).length") >= 2)
        t.shot("investigate-1400.png")
        name = top.find_element(By.CSS_SELECTOR, ".name").text
        badge = top.find_element(By.CSS_SELECTOR, ".badge").text
        prob = top.find_element(By.CSS_SELECTOR, ".prob").text
        t.check(name == "Lone Star Lodge" and badge == "strong" and "%" in prob, f"the top-match card: {name!r}, {badge!r}, {prob!r}")
        photos_of_query = driver.execute_script("return document.querySelectorAll('#photo').length + [...document.querySelectorAll('#results canvas, #results img')].filter(e => e.id === 'photo').length")
        captions = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#top figure.stored figcaption")]
        t.check(photos_of_query == 1 and all(c.startswith("Stored photo") for c in captions) and driver.find_element(By.CSS_SELECTOR, "#stage figcaption").text == "Your photo",
                f"the query is shown once ('Your photo'), evidence labelled: {captions}")
        # Every candidate row, weak ones included, shows its best evidence photo; no fused score beside 0–1 similarities.
        thumbs = wait.until(lambda d: d.execute_script("""
            const cards = [...document.querySelectorAll('#results .card[data-hotel]')];
            const shown = cards.filter(c => { const i = c.querySelector('img.thumb'); return i && !i.hidden && i.complete && i.naturalWidth > 0 && i.alt; });
            return shown.length === cards.length && cards.length > 1 ? [cards.length, shown.length] : null;"""))
        scores = driver.execute_script("return [...document.querySelectorAll('#results .card header')].filter(h => /score/.test(h.textContent)).length")
        t.check(thumbs and scores == 0, f"every candidate row shows its best evidence thumbnail ({thumbs}), and no score beside the similarities ({scores})")
        weak = driver.find_element(By.CSS_SELECTOR, "#weak summary").text
        others = len(driver.find_elements(By.CSS_SELECTOR, "#others .card"))
        t.check(weak.startswith("Weak matches (") and not driver.find_element(By.ID, "weak").get_attribute("open"), f"other candidates fold under {weak!r} ({others} compact rows above)")
        # The search reads no stored photo; the matched points of one evidence photo are asked for.
        driver.find_element(By.CSS_SELECTOR, "#top figure.stored button.points").click()
        said = wait.until(lambda d: next((e.text for e in d.find_elements(By.CSS_SELECTOR, "#top figure.stored div[aria-live]") if "points match" in e.text), None))
        t.check("points match in one consistent geometry" in said, f"the matching points of an evidence photo, on demand: {said!r}")
        marks = driver.execute_script("const c=document.getElementById('overlay'),d=c.getContext('2d').getImageData(0,0,c.width,c.height).data;let n=0;for(let i=0;i<d.length;i+=4)if(d[i]>200&&d[i+1]>180&&d[i+2]<60&&d[i+3]>0)n++;return n;")
        t.check(marks > 50, f"matched points are marked on your photo ({marks} px)")
        markers = driver.execute_script("const c=document.getElementById('resmap'),d=c.getContext('2d').getImageData(0,0,c.width,c.height).data;let n=0;for(let i=0;i<d.length;i+=4)if(d[i]<60&&d[i+1]>80&&d[i+1]<110&&d[i+2]<60)n++;return n;")
        t.check(markers > 100, f"the map shows the top candidate's marker ({markers} px of it)")
        clusters = driver.execute_script("""
            const c = document.createElement('canvas'); c.width = 300; c.height = 200;
            const m = new HMMap(c, {}); m.setMarkers([{lat: 39.7, lon: -105, label: '1'}, {lat: 39.7001, lon: -105.0001, label: '3'}, {lat: 25.7, lon: -80.2, label: '2'}]);
            m.zoom = 3; const at3 = m.clusters().map(k => k.members.map(x => x.label).join(' '));
            m.zoom = 18; return [at3, m.clusters().length];""")
        t.check(clusters == [["1 3", "2"], 3], f"markers that would overlap are one cluster, the best ranked on top, until zoomed in: {clusters}")

        # 5. The evidence pair, enlarged; all photos of the hotel, grouped by room.
        driver.find_element(By.CSS_SELECTOR, "#top figure.stored").click()
        wait.until(lambda d: d.execute_script("return document.getElementById('zoom').open && [...document.querySelectorAll('#zoom canvas')].every(c => c.width > 0)"))
        pair = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#zoom figcaption")]
        t.shot("evidence-pair.png")
        t.check(len(pair) == 2 and pair[0] == "Your photo" and pair[1].startswith("Stored photo"), f"click-to-zoom shows the pair: {pair}")
        wait.until(lambda d: d.execute_script("const c = document.querySelector('#zoom .compare canvas'); return c && c.width > 0"))
        differs = driver.execute_script("""
            const box = document.querySelector('#zoom .compare'), c = box.querySelector('canvas'), r = box.querySelector('input');
            const at = v => { r.value = v; r.dispatchEvent(new Event('input')); return [...c.getContext('2d').getImageData(0, 0, c.width, c.height).data]; };
            const a = at(0), b = at(100); let n = 0; for (let i = 0; i < a.length; i += 4) if (Math.abs(a[i] - b[i]) > 30) n++;
            return n;""")
        t.shot("evidence-compare.png")
        t.check(differs > 1000, f"the compare view slides between your photo and the stored one ({differs} px change)")
        red = "const c=document.querySelectorAll('#zoom .pair figure canvas')[1],d=c.getContext('2d').getImageData(0,0,c.width,c.height).data;let n=0;for(let i=0;i<d.length;i+=4)if(d[i]>200&&d[i+1]<120&&d[i+2]<90)n++;return n;"
        before_heat = driver.execute_script(red)
        driver.find_element(By.CSS_SELECTOR, "#zoom .heat").click()
        heat_said = wait.until(lambda d: (t_ := d.find_element(By.CSS_SELECTOR, "#zoom .heatsaid").text) and "Warmer" in t_ and t_)
        after_heat = driver.execute_script(red)
        t.shot("evidence-heat.png")
        t.check(after_heat > before_heat + 1000, f"the heat map shows which regions drove the match ({before_heat} → {after_heat} warm px): {heat_said!r}")
        driver.find_element(By.CSS_SELECTOR, "#zoom .close").click()
        driver.find_element(By.CSS_SELECTOR, "#top .all").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#allphotos .grid img")) > 0)
        rooms = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#allphotos h3")]
        alts = [e.get_attribute("alt") for e in driver.find_elements(By.CSS_SELECTOR, "#allphotos img")]
        t.check(len(rooms) >= 1 and all(a and "Lone Star Lodge" in a for a in alts), f"all photos of the hotel, by room {rooms}, with alt text")
        driver.find_element(By.CSS_SELECTOR, "#allphotos .close").click()

        # 6. Confirm the hotel in the case; export the report and open it offline.
        driver.find_element(By.CSS_SELECTOR, "#top .confirm").click()
        wait.until(lambda d: "✓" in d.find_element(By.CSS_SELECTOR, "#top .confirm").text)
        driver.find_element(By.ID, "showcase").click()
        journal = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#casepanel .journal li"))
        t.check(len(journal) == 2 and "Lone Star Lodge" in journal[0].text and "confirmed" in journal[1].text, f"the case holds the search and the verdict: {[j.text for j in journal]}")
        req = urllib.request.Request(f"{base}/api/v1/cases/{case_id}/report?format=html", headers={"Authorization": f"Bearer {investigator}"})
        report = os.path.join(OUT, "case-report.html")
        with urllib.request.urlopen(req, timeout=60) as r, open(report, "wb") as f:
            f.write(r.read())
        driver.get("file://" + report)
        text = driver.find_element(By.TAG_NAME, "body").text
        # Photos are embedded once each (SVG definitions) and drawn where they recur; masks are images.
        imgs = driver.execute_script("""
            const drawn = [...document.querySelectorAll('svg[role=img]')].map(s => {
                const def = document.getElementById(s.querySelector('use').getAttribute('href').slice(1));
                return [def ? def.getAttribute('href').slice(0, 5) : 'none', def ? s.getBoundingClientRect().width : 0, s.getAttribute('aria-label')];
            });
            return drawn.concat([...document.images].map(i => [i.src.slice(0, 5), i.naturalWidth, i.alt]));""")
        external = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'))")
        t.shot("case-report.png")
        ok = ("Ad 2026-114" in text and "Lone Star Lodge" in text and "confirmed" in text and "sscd" in text and "%" in text and "key" in text
              and len(imgs) >= 3 and all(s == "data:" and w > 0 and a for s, w, a in imgs) and not external)
        t.check(ok, f"the exported report opens offline: {len(imgs)} embedded images, no external requests ({external}), verdict, model and key")
        req = urllib.request.Request(f"{base}/api/v1/cases/{case_id}/report?format=csv", headers={"Authorization": f"Bearer {investigator}"})
        with urllib.request.urlopen(req, timeout=60) as r:
            rows = r.read().decode().splitlines()
        head = rows[0].split(",")
        confirmed = [r.split(",") for r in rows[1:] if ",confirmed," in r]
        t.check("verdict_search" in head and len(confirmed) == 1 and confirmed[0][head.index("verdict_search")] == confirmed[0][head.index("search_entry")],
                f"the CSV gives the verdict on the search it was given on ({len(confirmed)} row)")
        from selenium.webdriver.common.print_page_options import PrintOptions
        import base64
        pdf = base64.b64decode(driver.print_page(PrintOptions()))
        with open(os.path.join(OUT, "case-report.pdf"), "wb") as f:
            f.write(pdf)
        pages = pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages")
        t.check(pdf.startswith(b"%PDF") and pages >= 1, f"the report prints to PDF ({pages} pages, {len(pdf) // 1024} kB)")

        # 7. A link to the case opens it; contrast and alt text on every page.
        driver.get(f"{base}/investigate#case={case_id}")
        title = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#casepanel h2") and d.find_element(By.CSS_SELECTOR, "#casepanel h2").text)
        t.check("Ad 2026-114" in title and driver.find_element(By.ID, "case").get_attribute("value") == case_id, f"a link to the case opens it: {title!r}")
        # Coming back (a reload, or this link) restores the photo and its mask.
        restored = wait.until(lambda d: d.execute_script(PAINTED_JS) > 0 and "restored" in d.find_element(By.ID, "status").text and d.execute_script(PAINTED_JS))
        t.check(restored > 1000, f"after a reload the photo and its mask are back ({restored} px painted)")
        # A painted, unsearched mask asks before the page is left.
        ActionChains(driver).move_to_element(driver.find_element(By.ID, "mask")).click().perform()
        asks = driver.execute_script("const e = new Event('beforeunload', {cancelable: true}); window.dispatchEvent(e); return e.defaultPrevented;")
        t.check(asks, "leaving with a freshly painted mask asks first")
        # A double click on Search saves one search, not two.
        def searches():
            req = urllib.request.Request(f"{base}/api/v1/cases/{case_id}", headers={"Authorization": f"Bearer {investigator}"})
            with urllib.request.urlopen(req, timeout=60) as r:
                return sum(1 for e in json.loads(r.read())["entries"] if e["kind"] == "search")
        before = searches()
        driver.execute_script("const g = document.getElementById('go'); g.click(); g.click();")
        wait.until(lambda d: not d.find_element(By.ID, "go").get_attribute("disabled") and d.find_elements(By.CSS_SELECTOR, "#top .card"))
        time.sleep(1)
        t.check(searches() == before + 1, f"a double click on Search saves one search ({before} → {searches()})")
        # The whole photo panel takes a dropped photo, the page a pasted one; a file that is not a photo is refused at once.
        drop_js = """
            const [kind, name, type] = arguments;
            const c = document.createElement('canvas'); c.width = 320; c.height = 200; const g = c.getContext('2d'); g.fillStyle = '#3a6'; g.fillRect(0, 0, 320, 200);
            const blob = type.startsWith('image/') ? await new Promise(r => c.toBlob(r, type)) : new Blob(['not a photo'], { type });
            const dt = new DataTransfer(); dt.items.add(new File([blob], name, { type }));
            if (kind === 'drop') document.getElementById('query').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
            else document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));"""
        driver.execute_script("return (async () => {" + drop_js + "})(...arguments)", "drop", "notes.txt", "text/plain")
        refused = driver.find_element(By.ID, "status").text
        driver.execute_script("return (async () => {" + drop_js + "})(...arguments)", "drop", "dropped.png", "image/png")
        dropped = wait.until(lambda d: d.execute_script("return file && file.name"))
        driver.execute_script("return (async () => {" + drop_js + "})(...arguments)", "paste", "pasted.png", "image/png")
        pasted = wait.until(lambda d: d.execute_script("return file && file.name === 'pasted.png' && photo.width === 320 && file.name"))
        t.check("not a photo" in refused and dropped == "dropped.png" and pasted == "pasted.png", f"drop and paste take a photo ({dropped!r}, {pasted!r}); a text file is refused at once: {refused!r}")
        for page in ["/", "/contribute", "/docs"]:
            driver.get(base + page)
            time.sleep(1)
            low = driver.execute_script(CONTRAST_JS)
            t.check(not low, f"contrast ≥ 4.5:1 on {page} ({low[:3]})")
        driver.get(base + "/investigate")
        wait.until(lambda d: "investigator" in d.find_element(By.CSS_SELECTOR, "#keybox .state").text)
        driver.find_element(By.ID, "file").send_keys(QUERY)
        wait.until(lambda d: d.execute_script("return document.getElementById('photo').height > 100"))
        driver.find_element(By.ID, "go").click()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#top .card.top")))
        foreign = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(location.origin) && !n.startsWith('blob:') && !n.startsWith('data:'))")
        t.check(not foreign, f"without a tile server configured the page contacts nothing but the server ({foreign})")
        low = driver.execute_script(CONTRAST_JS)
        no_alt = driver.execute_script("return [...document.images].filter(i => !i.hasAttribute('alt')).length + [...document.querySelectorAll('canvas')].filter(c => !c.getAttribute('aria-label') && c.getAttribute('aria-hidden') !== 'true').length")
        t.check(not low and no_alt == 0, f"contrast ≥ 4.5:1 everywhere ({low[:3]}) and every image and canvas labelled ({no_alt} unlabelled)")

        # 8. A 390-px phone screen, keyboard only: the canvas fits, the tools work by keys.
        driver.set_window_size(390, 844)
        driver.get(base + "/investigate")
        wait.until(lambda d: "investigator" in d.find_element(By.CSS_SELECTOR, "#keybox .state").text)
        driver.find_element(By.ID, "file").send_keys(QUERY)
        wait.until(lambda d: d.execute_script("return document.getElementById('photo').height > 100"))
        width = driver.execute_script("return document.documentElement.clientWidth")
        canvas_w = driver.execute_script("return document.getElementById('mask').getBoundingClientRect().width")
        scroll = driver.execute_script("return document.documentElement.scrollWidth")
        t.check(canvas_w <= width and scroll <= width + 1, f"at 390 px the mask canvas fits ({canvas_w:.0f} of {width} px, page {scroll} px wide)")
        driver.execute_script("document.getElementById('stage').scrollIntoView()")
        t.shot("investigate-390-mask.png")
        mask_el = driver.find_element(By.ID, "mask")
        driver.execute_script("arguments[0].focus()", mask_el)
        keys = ActionChains(driver)
        for _ in range(4):
            keys = keys.send_keys(Keys.SPACE).send_keys(Keys.ARROW_RIGHT)
        keys.perform()
        by_keys = driver.execute_script(PAINTED_JS)
        ActionChains(driver).send_keys("e").send_keys(Keys.ARROW_LEFT).send_keys(Keys.SPACE).perform()
        erased_keys = driver.execute_script(PAINTED_JS)
        ActionChains(driver).key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()
        undone_keys = driver.execute_script(PAINTED_JS)
        t.check(by_keys > 500 and erased_keys < by_keys and undone_keys == by_keys, f"painting by keyboard: Space paints ({by_keys} px), E erases ({erased_keys}), Ctrl+Z undoes ({undone_keys})")
        driver.find_element(By.CSS_SELECTOR, "#filters summary").click()
        driver.find_element(By.ID, "pickmap").click()
        pick = driver.find_element(By.ID, "pickcanvas")
        wait.until(lambda d: d.execute_script("return document.getElementById('pickcanvas').width > 0"))
        time.sleep(0.5)
        ActionChains(driver).move_to_element(pick).click().perform()
        near = driver.find_element(By.ID, "near").get_attribute("value")
        t.check("," in near and all(abs(float(v)) <= 180 for v in near.split(",")), f"pick on map fills the near filter: {near!r}")
        driver.find_element(By.ID, "near").clear()
        driver.find_element(By.ID, "radius").clear()
        driver.find_element(By.ID, "go").click()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#top .card.top")))
        wait.until(lambda d: d.execute_script("return [...document.querySelectorAll('#top figure.stored canvas')].filter(c => c.width > 0).length") >= 1)
        scroll = driver.execute_script("return document.documentElement.scrollWidth")
        driver.execute_script("document.getElementById('top').scrollIntoView()")
        t.shot("investigate-390.png")
        t.check(scroll <= width + 1, f"the results fit the phone's width too ({scroll} px)")

        # 8b. Two photos of the room searched together, each painted on its own: the evidence
        # says which one it matches, and the second photo's mask goes with it.
        driver.find_element(By.ID, "more").send_keys(f"{ROOT}/data-sample/queries/h-lonestar-query.jpg")
        second = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "#shots button[data-i='1']")))
        first_paint = driver.execute_script(PAINTED_JS)
        second.click()
        wait.until(lambda d: d.execute_script("return document.getElementById('stage').dataset.shot") == "1")
        blank = driver.execute_script(PAINTED_JS)
        driver.find_element(By.CSS_SELECTOR, "input[name=tool][value=brush]").click()
        ActionChains(driver).move_to_element(driver.find_element(By.ID, "mask")).click().perform()
        second_paint = driver.execute_script(PAINTED_JS)
        driver.find_element(By.CSS_SELECTOR, "#shots button[data-i='0']").click()
        wait.until(lambda d: d.execute_script("return document.getElementById('stage').dataset.shot") == "0")
        back = driver.execute_script(PAINTED_JS)
        labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#shots button")]
        t.check(blank == 0 and second_paint > 0 and back == first_paint and "painted" in labels[1], f"each photo keeps its own mask: {first_paint} px on photo 1, {blank} then {second_paint} on photo 2, {back} back on 1; {labels}")
        # The last results go first, so that every wait below is on the new ones (which are
        # drawn while they are read: a stale element is read again).
        driver.execute_script("document.getElementById('results').innerHTML = ''")
        driver.find_element(By.ID, "go").click()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#top .card.top")))
        fresh = WebDriverWait(driver, 30, ignored_exceptions=[StaleElementReferenceException])
        together = fresh.until(lambda d: next((e.text for e in d.find_elements(By.CSS_SELECTOR, "#results p.muted") if "searched together" in e.text), None))
        which = fresh.until(lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, "#top figure.stored div.small") if "matches your photo" in e.text])
        masked = driver.execute_script("return last.queries.map(q => q.masked)")
        t.check(together.startswith("2 photos") and which and masked[1] is True, f"two photos searched together: {together!r}, {which[:1]}, masked {masked}")
        # 8c. A phone's HEIC photo: the browser may not show it, but it is searched as it is.
        driver.find_element(By.ID, "file").send_keys(f"{ROOT}/tests/fixtures/heic/lonestar-gps.heic")
        wait.until(lambda d: "cannot show" in d.find_element(By.ID, "status").text or d.execute_script("return file && file.name.endsWith('.heic') && document.getElementById('photo').height > 100"))
        driver.execute_script("document.getElementById('results').innerHTML = ''")
        driver.find_element(By.ID, "go").click()
        heic_top = fresh.until(lambda d: (e := d.find_elements(By.CSS_SELECTOR, "#top .card.top .name")) and e[0].text)
        t.check(heic_top == "Lone Star Lodge", f"a HEIC photo from a phone is searched: top match {heic_top!r}")
        # Countries by name: "United States" filters as "US" does; a name that is no country says so.
        driver.execute_script("document.getElementById('filters').open = true")
        country = driver.find_element(By.ID, "country")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", country)
        country.clear(); country.send_keys("United States")
        driver.execute_script("document.getElementById('results').innerHTML = ''")
        driver.find_element(By.ID, "go").click()
        by_name = fresh.until(lambda d: (e := d.find_elements(By.CSS_SELECTOR, "#top .card.top .name")) and e[0].text)
        country.clear(); country.send_keys("Narnia")
        driver.find_element(By.ID, "go").click()
        said = wait.until(lambda d: (e := d.find_elements(By.CSS_SELECTOR, "#status .err")) and e[0].text)
        country.clear(); country.send_keys("France")
        driver.execute_script("document.getElementById('results').innerHTML = ''")
        driver.find_element(By.ID, "go").click()
        none = fresh.until(lambda d: (e := d.find_elements(By.CSS_SELECTOR, "#top .card.none h2")) and e[0].text)
        weak_hidden = driver.execute_script("return document.getElementById('weak').hidden")
        country.clear()
        t.check(by_name == "Lone Star Lodge" and "no country is called" in said and none == "No hotel matches these filters" and weak_hidden,
                f"countries by name: 'United States' → {by_name!r}; 'Narnia' → {said!r}; 'France' → {none!r}")
        # The exported report reads on the phone too.
        driver.get("file://" + report)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "section.search"))
        report_scroll = driver.execute_script("return document.documentElement.scrollWidth")
        t.shot("case-report-390.png")
        t.check(report_scroll <= width + 1, f"the case report fits a 390-px phone ({report_scroll} px wide)")

        # 9. With a tile server configured (a loopback one here), the map draws its tiles.
        tile_port, hits = free_port(), []
        import http.server, threading, io
        from PIL import Image as PILImage
        buf = io.BytesIO()
        PILImage.new("RGB", (256, 256), (0, 200, 0)).save(buf, "PNG")
        tile = buf.getvalue()

        class Tiles(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()
                self.wfile.write(tile)

            def log_message(self, *a):
                pass

        tiles = http.server.ThreadingHTTPServer(("127.0.0.1", tile_port), Tiles)
        threading.Thread(target=tiles.serve_forever, daemon=True).start()
        cfg = os.path.join(data, "tiles.toml")
        with open(cfg, "w") as f:
            f.write(f'[serve]\nmap_tiles = "http://127.0.0.1:{tile_port}/{{z}}/{{x}}/{{y}}.png"\n')
        port2 = free_port()
        server2 = subprocess.Popen([BIN, "--data-dir", data, "--config", cfg, "serve", "--bind", f"127.0.0.1:{port2}"], stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port2}/readyz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            driver.get(f"http://127.0.0.1:{port2}/investigate")
            use_key(driver, wait, investigator, "investigator")  # another origin: the key is asked again
            driver.find_element(By.CSS_SELECTOR, "#filters summary").click()
            driver.find_element(By.ID, "pickmap").click()
            wait.until(lambda d: len(hits) > 0)
            time.sleep(1)
            green = driver.execute_script("const c=document.getElementById('pickcanvas'),d=c.getContext('2d').getImageData(0,0,c.width,c.height).data;let n=0;for(let i=0;i<d.length;i+=4)if(d[i]<40&&d[i+1]>170&&d[i+2]<40)n++;return n;")
            t.shot("map-tiles.png")
            t.check(len(hits) > 0 and all(h.endswith(".png") for h in hits) and green > 1000, f"a configured tile server's tiles are drawn ({len(hits)} tiles asked for, {green} px of them)")
        finally:
            server2.terminate()
            server2.wait(timeout=20)
            tiles.shutdown()

        # 10. The API reference renders the server's own OpenAPI document, offline.
        driver.set_window_size(1400, 1000)
        driver.get(base + "/docs")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#ops .op .method")) > 0)
        t.shot("docs.png")
        ops = driver.execute_script("return [...document.querySelectorAll('#ops .op')].map(e => e.textContent)")
        ok = any("/api/v1/search" in o and "SearchResult" in o for o in ops) and any("/api/v1/cases/{id}/report" in o for o in ops)
        t.check(ok, f"the API reference page lists {len(ops)} operations, cases among them")
    except Exception as e:  # a broken page is a failed test, not a crash
        print(f"FAILED: {type(e).__name__}: {e}")
        if t:
            t.failed += 1
        if driver:
            driver.save_screenshot(os.path.join(OUT, "failure.png"))
    finally:
        if driver:
            driver.quit()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(data, ignore_errors=True)
    passed, failed = (t.passed, t.failed) if t else (0, 1)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
