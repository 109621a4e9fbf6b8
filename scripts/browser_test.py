"""Browser test of the two web pages in real headless Chromium (Debian's chromium +
chromium-driver), against a real `hotelmatch serve` on 127.0.0.1 over data-sample.

Contributes a photo through the Contribute page, then searches through the Investigate
page with a mask painted by dragging the brush over the person, and checks that the
expected hotel comes first. Screenshots go to $OUT (default target/browser-test/).
Exit code 0 on success; prints 'N passed, M failed'.

    .cache/venv/bin/python scripts/browser_test.py
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
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("HOTELMATCH_BIN") or os.path.join(ROOT, "target", "release", "hotelmatch")
OUT = os.environ.get("OUT") or os.path.join(ROOT, "target", "browser-test")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args, data):
    return subprocess.run([BIN, "--data-dir", data, *args], check=True, capture_output=True, text=True).stdout


def main():
    os.makedirs(OUT, exist_ok=True)
    data = tempfile.mkdtemp(prefix="hm-browser-")
    run("import", "--hotels", f"{ROOT}/data-sample/hotels.csv", "--images", f"{ROOT}/data-sample/images.csv", data=data)
    uploader = json.loads(run("keys", "create", "--role", "uploader", data=data))["token"]
    investigator = json.loads(run("keys", "create", "--role", "investigator", data=data))["token"]
    port = free_port()
    server = subprocess.Popen([BIN, "--data-dir", data, "serve", "--bind", f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    passed = failed = 0
    driver = None
    try:
        for _ in range(300):  # bounded wait for the server
            try:
                urllib.request.urlopen(base + "/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        opts = webdriver.ChromeOptions()
        for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1600",
                  f"--user-data-dir={tempfile.mkdtemp(prefix='hm-chrome-')}"]:
            opts.add_argument(a)
        opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)
        driver.set_page_load_timeout(30)
        wait = WebDriverWait(driver, 30)

        # 1. Contribute a photo through the page.
        driver.get(base + "/contribute")
        driver.find_element(By.CSS_SELECTOR, "#keybox input").send_keys(uploader)
        driver.find_element(By.CSS_SELECTOR, "#keybox button").click()
        driver.find_element(By.ID, "hotel").send_keys("Harbor")
        wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "#suggest div[data-id]"))).click()
        driver.find_element(By.ID, "room").send_keys("1207")
        driver.find_element(By.ID, "f0").send_keys(f"{ROOT}/data-sample/imagenet/espresso.jpg")
        driver.find_element(By.ID, "send").click()
        done = wait.until(EC.presence_of_element_located((By.ID, "done")))
        driver.save_screenshot(os.path.join(OUT, "contribute.png"))
        ok = "received" in done.text
        print(("ok" if ok else "FAILED") + ": contribute a photo through the page")
        passed, failed = passed + ok, failed + (not ok)

        # 2. Search through the page with a painted mask; the expected hotel comes first.
        driver.get(base + "/investigate")
        driver.find_element(By.CSS_SELECTOR, "#keybox input").send_keys(investigator)
        driver.find_element(By.CSS_SELECTOR, "#keybox button").click()
        driver.find_element(By.ID, "file").send_keys(f"{ROOT}/data-sample/queries/h-lonestar-query.jpg")
        wait.until(lambda d: d.execute_script("return document.getElementById('photo').height > 100"))
        mask = driver.find_element(By.ID, "mask")
        # Paint over the person: where the investigator's mask for this query is, scaled to the canvas.
        from PIL import Image
        ref = Image.open(f"{ROOT}/data-sample/queries/h-lonestar-query-mask.png")
        left, top, right, bottom = ref.getbbox()
        w, h = mask.size["width"], mask.size["height"]
        sx, sy = w / ref.width, h / ref.height
        to_offset = lambda x, y: (int(x * sx - w / 2), int(y * sy - h / 2))  # offsets from the element's centre
        chain = ActionChains(driver).move_to_element_with_offset(mask, *to_offset(left, top)).click_and_hold()
        for y in range(top, bottom, 25):
            for x in range(left, right, 25):
                chain = chain.move_to_element_with_offset(mask, *to_offset(x, y))
        chain.release().perform()
        painted = driver.execute_script("""const c=document.getElementById('mask'),d=c.getContext('2d').getImageData(0,0,c.width,c.height).data;let n=0;for(let i=3;i<d.length;i+=4)if(d[i])n++;return n;""")
        driver.find_element(By.ID, "go").click()
        first = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#results .hotel .rank")))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .hotel img")) > 0)
        driver.save_screenshot(os.path.join(OUT, "investigate.png"))
        ok = painted > 1000 and "Lone Star Lodge" in first.text
        print(("ok" if ok else "FAILED") + f": search with a painted mask ({painted} px painted) puts {first.text!r} first")
        passed, failed = passed + ok, failed + (not ok)

        # 3. The API reference renders the server's own OpenAPI document, offline.
        driver.get(base + "/docs")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#ops .op .method")) > 0)
        driver.save_screenshot(os.path.join(OUT, "docs.png"))
        ops = driver.execute_script("return [...document.querySelectorAll('#ops .op')].map(e => e.textContent)")
        ok = any("/api/v1/search" in t and "SearchResult" in t for t in ops) and any("/api/v1/jobs/reindex" in t for t in ops)
        print(("ok" if ok else "FAILED") + f": the API reference page lists {len(ops)} operations and schemas")
        passed, failed = passed + ok, failed + (not ok)
    except Exception as e:  # a broken page is a failed test, not a crash
        print(f"FAILED: {type(e).__name__}: {e}")
        failed += 1
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
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
