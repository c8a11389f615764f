"""`i2i serve`: the page's upload checks, a real headless Chromium round trip, a load check, Ctrl-C."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from helpers import tiny_config, tiny_cyclegan_config, write_pairs, write_unpaired
from i2i.training.trainer import train

gr = pytest.importorskip("gradio", reason="gradio is not installed (pip install 'i2i[serve]')")
from i2i.translation import serve  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny Pix2Pix run with a val split (examples) and a tiny CycleGAN run."""
    tmp = tmp_path_factory.mktemp("serve")
    root = write_pairs(tmp / "pairs")
    write_pairs(tmp / "val", seed=1)
    (tmp / "val" / "train").rename(root / "val")
    p2p = train(tiny_config(root, tmp / "runs", name="facade", max_steps=2), progress=False).run_dir
    cg = train(tiny_cyclegan_config(write_unpaired(tmp / "unpaired"), tmp / "runs", name="seasons", max_steps=2),
               progress=False).run_dir
    return p2p, cg


def photo(tmp: Path, size: tuple[int, int] | None = None) -> Path:
    """A real photo (scikit-image's cat), optionally resized, as a PNG."""
    from skimage import data

    img = Image.fromarray(data.chelsea())
    if size:
        img = img.resize(size)
    path = tmp / f"cat_{img.width}x{img.height}.png"
    img.save(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`i2i serve` in its own process, on a free local port."""

    def __init__(self, runs: list[Path], *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "i2i", "serve", *map(str, runs), "--port", str(self.port), "--device", "cpu",
             "--precision", "fp32", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 120
        while not any("Serving" in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("i2i serve did not start:\n" + "".join(self.lines))
            time.sleep(0.2)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def rss_kb(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


# -- the upload checks, in this process ---------------------------------------------------------------
def test_bad_uploads_are_refused_with_the_reason(tmp_path: Path) -> None:
    not_image = tmp_path / "notes.png"
    not_image.write_text("just some text")
    truncated = tmp_path / "half.png"
    truncated.write_bytes(photo(tmp_path).read_bytes()[:3000])
    gif = tmp_path / "moving.gif"
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue")]
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # a few kB on disk, 400 MP decoded
    for path, reason in ((not_image, "not a recognised image format"), (truncated, "half.png"),
                         (gif, "2 frames"), (bomb, "pixels")):
        with pytest.raises(gr.Error) as caught:
            serve.checked_image(str(path), max_pixels=4096 * 4096)
        assert reason in caught.value.message
        assert str(tmp_path) not in caught.value.message  # the file's name, never the server's path
    with pytest.raises(gr.Error, match="takes at most 1,000"):
        serve.checked_image(str(photo(tmp_path)), max_pixels=1000)


def test_sixteen_bit_tiff_keeps_its_depth_and_is_shown(tmp_path: Path) -> None:
    deep = (np.arange(24 * 40 * 3, dtype=np.uint16).reshape(24, 40, 3) * 37).astype(np.uint16)
    path = tmp_path / "deep.tif"
    import cv2

    cv2.imwrite(str(path), deep[:, :, ::-1])
    array = serve.checked_image(str(path), max_pixels=10_000)
    assert array.dtype == np.uint16 and np.array_equal(array, deep)
    shown = serve.displayable(array)
    assert shown.dtype == np.uint8 and shown.shape == (24, 40, 3)


def test_the_page_offers_directions_info_examples_and_blocks_the_run(runs: tuple[Path, Path]) -> None:
    p2p, cg = runs
    blocks = serve.build([p2p, cg], serve.ServeConfig(device="cpu", precision="fp32"))
    app = blocks.fns  # the events the page wires
    names = {fn.api_name for fn in app.values() if fn.api_name}
    assert {"load", "translate", "translate_many", "translate_video"} <= names
    translate = next(fn for fn in app.values() if fn.api_name == "translate")
    assert translate.batch and translate.max_batch_size == 8
    assert str(p2p.resolve()) in blocks.blocked_paths and str(cg.resolve()) in blocks.blocked_paths
    served = serve.load_runs([p2p, cg], serve.ServeConfig(device="cpu"), blocks.i2i_work / "again")
    assert list(served["seasons"].translators) == ["AtoB", "BtoA"]
    assert "pix2pix" in served["facade"].info and "step 2" in served["facade"].info
    assert "pairs" in served["facade"].info and "/" not in served["facade"].info.split("`")[1]
    examples = served["facade"].examples["AtoB"]
    assert len(examples) == 4 and Image.open(examples[0]).size == (32, 32)  # the A half of a 32x64 pair


def test_several_images_give_a_gallery_and_a_zip(runs: tuple[Path, Path], tmp_path: Path) -> None:
    import zipfile

    blocks = serve.build([runs[0]], serve.ServeConfig(device="cpu", precision="fp32"))
    app = serve.App(serve.load_runs([runs[0]], serve.ServeConfig(device="cpu", precision="fp32"),
                                    tmp_path / "w"), serve.ServeConfig(), tmp_path / "w")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    files = [str(photo(tmp_path, (64, 48))), str(bad), str(photo(tmp_path, (40, 40)))]
    gallery, archive = app.translate_many(files, "facade", "AtoB")
    assert [name for _, name in gallery] == ["cat_64x48", "cat_40x40"]
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == ["cat_40x40.png", "cat_64x48.png"]
        assert Image.open(io.BytesIO(zf.read("cat_64x48.png"))).size == (64, 48)
    with pytest.raises(gr.Error, match="none of the files"):
        app.translate_many([str(bad)], "facade", "AtoB")
    blocks.close()


# -- the served page ---------------------------------------------------------------------------------
def test_ctrl_c_stops_the_server_cleanly(runs: tuple[Path, Path]) -> None:
    server = Server([runs[0]])
    assert urllib.request.urlopen(server.url, timeout=10).status == 200
    assert server.stop() == 0
    assert "stopped" in "".join(server.lines) and "Traceback" not in "".join(server.lines)


def test_the_run_files_cannot_be_fetched_through_the_page(runs: tuple[Path, Path]) -> None:
    server = Server([runs[0]])
    try:
        weights = next((runs[0] / "ckpt").glob("step_*/G.safetensors")).resolve()
        for route in (f"gradio_api/file={weights}", f"file={weights}", f"gradio_api/file={runs[0] / 'config.json'}"):
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(server.url + route, timeout=10)
            assert caught.value.code in (403, 404)
    finally:
        server.stop()


def test_twenty_concurrent_requests_are_all_answered_with_flat_memory(runs: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client, handle_file

    server = Server([runs[0]])
    inputs = [photo(tmp_path, (32 + 4 * i, 40)) for i in range(20)]

    def one(path: Path) -> tuple[int, int] | None:
        client = Client(server.url, verbose=False, download_files=str(tmp_path / "dl" / path.stem))
        out = client.predict(handle_file(str(path)), "facade", "AtoB", api_name="/translate")[0]
        return None if out is None else Image.open(out).size

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    inputs[7] = bad  # batched with good ones: only its own answer is empty
    try:
        rss = []
        for _ in range(3):
            with ThreadPoolExecutor(20) as pool:
                sizes = list(pool.map(one, inputs))
            assert sizes == [None if i == 7 else (32 + 4 * i, 40) for i in range(20)]  # each its own request's
            rss.append(server.rss_kb())
        assert rss[-1] - rss[0] < 60_000, f"server RSS grew {rss} kB"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)")
    return sync_api


def test_serve_browser_roundtrip(runs: tuple[Path, Path], tmp_path: Path, chromium) -> None:
    """bars: serve-browser-roundtrip. A real photo in, a corrupt file's message, CycleGAN both ways, no outside
    request."""
    server = Server(list(runs))
    cat = photo(tmp_path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    requests: list[str] = []
    try:
        with chromium.sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1100, "height": 900})
            page = context.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.goto(server.url)
            translate = page.get_by_role("button", name="Translate", exact=True)

            def run(path: Path) -> np.ndarray:
                old = page.locator("#output img").get_attribute("src") if page.locator("#output img").count() else None
                page.locator("#input input[type=file]").set_input_files(str(path))
                page.wait_for_timeout(300)
                translate.click()
                page.wait_for_function(
                    "old => { const i = document.querySelector('#output img'); return i && i.complete && "
                    "i.naturalWidth > 0 && i.src !== old; }", arg=old, timeout=60_000)
                src = page.locator("#output img").get_attribute("src")
                return np.asarray(Image.open(io.BytesIO(urllib.request.urlopen(src, timeout=10).read())))

            original = np.asarray(Image.open(cat))
            out = run(cat)
            assert out.shape[:2] == original.shape[:2]
            assert np.abs(out[:, :, :3].astype(int) - original).mean() > 5

            page.locator("#input input[type=file]").set_input_files(str(broken))
            translate.click()
            page.get_by_text("broken.png", exact=False).first.wait_for(timeout=30_000)
            assert "cannot read image broken.png" in page.content()

            page.locator("#model input").click()
            page.get_by_role("option", name="seasons").click()
            page.get_by_label("AtoB").wait_for()
            a_to_b = run(cat)
            page.get_by_label("BtoA").check()
            page.wait_for_timeout(300)
            b_to_a = run(photo(tmp_path, (451, 299)))  # a new upload: the output must be this run's
            assert b_to_a.shape[:2] == (299, 451)
            assert np.abs(a_to_b[:299].astype(int) - b_to_a.astype(int)).mean() > 1
            if os.environ.get("I2I_SERVE_SCREENSHOT"):
                page.screenshot(path=os.environ["I2I_SERVE_SCREENSHOT"], full_page=False)
            context.close()
    finally:
        assert server.stop() == 0
    local = urlparse(server.url).netloc
    outside = [u for u in requests if urlparse(u).scheme in ("http", "https", "ws", "wss")
               and urlparse(u).netloc != local]
    assert requests and not outside, f"the page asked other hosts: {outside}"


def test_the_video_tab_translates_a_clip_into_h264_a_browser_plays(runs: tuple[Path, Path], tmp_path: Path) -> None:
    av = pytest.importorskip("av", reason="PyAV is not installed (pip install 'i2i[video]')")
    from test_video import make_video

    app = serve.App(serve.load_runs([runs[0]], serve.ServeConfig(device="cpu", precision="fp32"), tmp_path / "work"),
                    serve.ServeConfig(device="cpu", precision="fp32"), tmp_path / "work")
    label = next(iter(app.served))
    clip = make_video(tmp_path / "clip.mp4", n=6, size=(64, 96))
    out = Path(app.translate_video(str(clip), label, "AtoB"))
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(frames) == 6 and frames[0].shape == (64, 96, 3)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip.read_bytes()[:300])  # a truncated upload: a reason on the page, no traceback
    with pytest.raises(gr.Error, match=r"broken\.mp4"):
        app.translate_video(str(broken), label, "AtoB")
    with pytest.raises(gr.Error, match="max-pixels"):
        small = serve.App(app.served, serve.ServeConfig(device="cpu", max_pixels=100), tmp_path / "work2")
        small.translate_video(str(clip), label, "AtoB")
