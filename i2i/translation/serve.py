"""`i2i serve`: a web page over Translator and the video path (gradio, the serve extra), offline and private."""

from __future__ import annotations

import ipaddress
import re
import shutil
import tempfile
import threading
import warnings
import weakref
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from i2i.checkpoint.weights import resolve_checkpoint
from i2i.config import ServeConfig
from i2i.data.io import ImageReadError, convert_depth, list_images, preview, read_image, write_image
from i2i.translation.translator import Translator, run_directions

try:
    import gradio as gr
except ImportError as err:  # the serve extra is optional
    raise ImportError("i2i serve needs gradio: pip install 'i2i[serve]'") from err

SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif")
MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace")
EXAMPLES = 4  # example inputs shown per run and direction
HALVES = {"AtoB": 0, "BtoA": 1}  # which half of a side-by-side pair is the input


def theme() -> gr.themes.Base:
    """gradio's default look with system fonts: the default theme would fetch web fonts from Google."""
    return gr.themes.Default(font=list(SYSTEM_FONTS), font_mono=list(MONO_FONTS))


@dataclass
class Served:
    """One run on the page: a Translator per direction, what the page says about it, its example inputs."""

    label: str
    translators: dict[str, Translator]
    info: str
    examples: dict[str, list[str]] = field(default_factory=dict)  # direction -> image files in the work folder


def labels(runs: Sequence[Path]) -> list[str]:
    """Short unique names for the runs: the folder name, with its parents where two share it."""
    depth = 1
    while True:
        names = ["/".join(run.resolve().parts[-depth:]) for run in runs]
        if len(set(names)) == len(names) or depth > 8:
            return names
        depth += 1


def describe(label: str, translator: Translator, checkpoint: Path, directions: list[str]) -> str:
    """Markdown naming the model, its training data (folder name only: no server paths) and step."""
    cfg = translator.cfg
    match = re.fullmatch(r"step_0*(\d+)", checkpoint.name)
    step = match[1] if match else checkpoint.name
    data = Path(cfg.data.root).name or "unknown data"
    return f"**{label}**: {cfg.model}, trained on `{data}`, step {step}; translates {' and '.join(directions)}"


def example_inputs(translator: Translator, direction: str, folder: Path) -> list[str]:
    """Up to EXAMPLES input images from the run's validation (else test) split, written into `folder`."""
    data = translator.cfg.data
    root = Path(translator.cfg.train.val_data or data.root)
    paired = translator.data_spec is None or translator.data_spec.kind == "paired"
    found: list[Path] = []
    for split in (translator.cfg.train.val_split, "val", "test"):
        source = root / split
        if paired and (source / direction[0]).is_dir():  # A/ and B/ folders
            found = list_images(source / direction[0])
        elif paired and source.is_dir():
            found = list_images(source)
        elif not paired:
            found = list_images(root / f"{split}{direction[0]}") if (root / f"{split}{direction[0]}").is_dir() else []
        if found:
            break
    paths = []
    folder.mkdir(parents=True, exist_ok=True)
    side_by_side = paired and not (root / split / direction[0]).is_dir() if found else False
    for i, path in enumerate(found[:EXAMPLES]):
        try:
            image = read_image(path)
        except ImageReadError:
            continue
        if side_by_side:
            half = image.shape[1] // 2
            image = image[:, half:] if HALVES[translator.direction] else image[:, :half]
        out = folder / f"{direction}_{i}.png"
        write_image(out, displayable(image))
        paths.append(str(out))
    return paths


def load_runs(runs: Sequence[Path], config: ServeConfig, work: Path) -> dict[str, Served]:
    """Every run's translators, loaded once for the life of the process."""
    served = {}
    for label, run in zip(labels(runs), runs, strict=True):
        directions = run_directions(run)
        translators = {d: Translator.from_pretrained(run, direction=d, device=config.device,
                                                     precision=config.precision, ema=config.ema,
                                                     batch_size=config.batch_size) for d in directions}
        first = translators[directions[0]]
        item = Served(label, translators, describe(label, first, resolve_checkpoint(run), directions))
        for index, (d, translator) in enumerate(translators.items()):
            item.examples[d] = example_inputs(translator, d, work / "examples" / f"{len(served)}_{index}")
        served[label] = item
    return served


def displayable(array: np.ndarray) -> np.ndarray:
    """An HxW or HxWx3/4 uint8 array a browser shows (16-bit images reduced to 8 bits for the page; other band
    counts and floats by their first three bands, stretched: io.preview)."""
    array = preview(array)
    if array.dtype != np.uint8:
        array = convert_depth(array, np.dtype(np.uint8))
    if array.ndim == 3 and array.shape[2] == 1:
        return array[:, :, 0]
    if array.ndim == 3 and array.shape[2] == 2:  # gray + alpha: the browser gets RGBA
        return np.dstack([array[:, :, :1].repeat(3, axis=2), array[:, :, 1:]])
    return array


def checked_image(path: str | None, max_pixels: int) -> np.ndarray:
    """Decode an upload with i2i's reader, or raise gr.Error saying why (the file's name, never a server path)."""
    if path is None:
        raise gr.Error("Upload an image first.")
    file = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as img:  # reads the header only: the size is known before anything is decoded
                width, height = img.size
    except Image.DecompressionBombError:
        width = height = max_pixels  # larger than PIL decodes at all
        raise gr.Error(f"{file.name} is far larger than this page takes (at most {max_pixels:,} pixels)") from None
    except (UnidentifiedImageError, OSError, ValueError):
        width = height = 0  # the reader below says what is wrong, or reads what PIL cannot open (float TIFF)
    if width * height > max_pixels:
        raise gr.Error(f"{file.name} is {width}×{height} = {width * height:,} pixels; this page takes at most "
                       f"{max_pixels:,} (--max-pixels)")
    try:
        array = read_image(file, warn=lambda message: gr.Warning(message.replace(str(file), file.name)))
    except ImageReadError as err:
        raise gr.Error(str(err).replace(str(file), file.name)) from None
    if array.shape[0] * array.shape[1] > max_pixels:
        raise gr.Error(f"{file.name} has {array.shape[0] * array.shape[1]:,} pixels; this page takes at most "
                       f"{max_pixels:,} (--max-pixels)")
    return array


def upload(**kwargs: Any) -> gr.Image:
    """gr.Image that hands the uploaded file's path over undecoded: i2i's reader checks it (gradio's would
    raise a bare PIL error, with a server path, on a file that is not an image). The method is replaced on the
    instance: a gr.Image subclass would make gradio write a .pyi stub beside this module at import."""
    image = gr.Image(**kwargs)
    decode = image.preprocess

    def preprocess(payload: Any) -> str | None:
        if payload is not None and payload.url and payload.url.startswith("data:"):
            return decode(payload)  # a pasted image: gradio writes it to a file
        return None if payload is None or payload.path is None else str(payload.path)

    image.preprocess = preprocess
    return image


class App:
    """The page's event handlers over the loaded runs; every file it writes lies in `work`."""

    def __init__(self, served: dict[str, Served], config: ServeConfig, work: Path) -> None:
        self.served, self.config, self.work = served, config, work
        self._count = 0
        self._lock = threading.Lock()

    def _folder(self) -> Path:
        with self._lock:
            self._count += 1
            folder = self.work / "out" / f"{self._count:06d}"
        folder.mkdir(parents=True)
        return folder

    def translator(self, label: str, direction: str) -> Translator:
        item = self.served.get(label)
        if item is None or direction not in item.translators:
            raise gr.Error(f"this page serves {', '.join(self.served)}; pick one of them and its direction")
        return item.translators[direction]

    def load(self, path: str | None) -> None:
        """Step one of a translation, one request at a time: check the upload, so that a bad file is reported
        as its own error (in step two it would fail the requests batched with it)."""
        checked_image(path, self.config.max_pixels)

    def translate(self, paths: list[str | None], models: list[str], directions: list[str],
                  ) -> tuple[list[np.ndarray | None], list[tuple[np.ndarray, np.ndarray] | None]]:
        """Step two, batched over queued requests: uploads -> outputs and compare pairs, in order.

        An upload that cannot be read (only an API call that skipped step one sends one) gets None.
        """
        arrays: list[np.ndarray | None] = []
        for path in paths:
            try:
                arrays.append(checked_image(path, self.config.max_pixels))
            except gr.Error:
                arrays.append(None)
        outputs: list[np.ndarray | None] = [None] * len(paths)
        by_model: dict[tuple[str, str], list[int]] = {}
        for i, key in enumerate(zip(models, directions, strict=True)):
            if arrays[i] is not None:
                by_model.setdefault(key, []).append(i)
        for (label, direction), indices in by_model.items():
            translator = self.translator(label, direction)
            results = translator.translate_arrays([arrays[i] for i in indices])
            for i, out in zip(indices, results, strict=True):
                outputs[i] = displayable(out)
        pairs = [None if o is None else (displayable(a), o) for a, o in zip(arrays, outputs, strict=True)]
        return outputs, pairs

    def translate_many(self, files: list[str] | None, label: str, direction: str) -> tuple[list, str]:
        """Several uploads -> a gallery and a zip of the outputs; unreadable ones are named and skipped."""
        if not files:
            raise gr.Error("Upload one or more images first.")
        if len(files) > self.config.max_files:
            raise gr.Error(f"{len(files)} files: this page translates at most {self.config.max_files} at once")
        translator = self.translator(label, direction)
        arrays, names = [], []
        for path in files:
            try:
                arrays.append(checked_image(path, self.config.max_pixels))
                names.append(Path(path).stem)
            except gr.Error as err:
                gr.Warning(err.message)
        if not arrays:
            raise gr.Error("none of the files could be read (see the messages)")
        folder = self._folder()
        gallery = []
        taken: set[str] = set()
        for out, name in zip(translator.translate_arrays(arrays), names, strict=True):
            stem = name
            while stem in taken:
                stem += "_"
            taken.add(stem)
            target = folder / f"{stem}.png"
            write_image(target, out)  # full depth and resolution
            gallery.append((str(target), stem))
        archive = folder / "translated.zip"
        partial = folder / ".translated.zip.partial"
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            for path, _ in gallery:
                zf.write(path, Path(path).name)
        partial.replace(archive)
        return gallery, str(archive)

    def translate_video(self, path: str | None, label: str, direction: str) -> str:
        """A video -> its translation as H.264 (yuv420p) MP4 that browsers play, audio kept."""
        from i2i.translation import video

        if path is None:
            raise gr.Error("Upload a video first.")
        translator = self.translator(label, direction)
        name = Path(path).name
        try:
            info = video.probe(path)
            if info.width * info.height > self.config.max_pixels:
                raise gr.Error(f"{name} has {info.width}×{info.height} frames; this page takes at most "
                               f"{self.config.max_pixels:,} pixels (--max-pixels)")
            target = self._folder() / f"{Path(path).stem}_{direction}.mp4"
            translator.translate_video(path, target, codec="libx264", progress=False)
        except gr.Error:
            raise
        except ImportError as err:
            raise gr.Error(f"videos need PyAV on the server: {err}") from None
        except (ValueError, OSError, RuntimeError) as err:
            raise gr.Error(str(err).replace(str(path), name)) from None
        return str(target)


def build(runs: Sequence[str | Path], config: ServeConfig | None = None) -> gr.Blocks:
    """The gradio app for `runs` (run directories, checkpoint folders or weights files), to launch or mount.

    The runs are loaded here, once. Launch it with `theme=i2i.translation.serve.theme()` (system fonts) and
    `blocked_paths=app.blocked_paths`, as `serve` does.
    """
    config = config or ServeConfig()
    problems = config.problems()
    if problems:
        raise ValueError("; ".join(problems))
    runs = [Path(r) for r in runs]
    if not runs:
        raise ValueError("give at least one run to serve")
    work = Path(tempfile.mkdtemp(prefix="i2i-serve-"))
    try:
        served = load_runs(runs, config, work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    app = App(served, config, work)
    first = next(iter(served.values()))
    first_direction = next(iter(first.translators))

    with gr.Blocks(title="i2i", analytics_enabled=False) as blocks:
        gr.Markdown("## i2i: image-to-image translation")
        with gr.Row():
            model = gr.Dropdown(list(served), value=first.label, label="Model", visible=len(served) > 1,
                                elem_id="model")
            direction = gr.Radio(list(first.translators), value=first_direction, label="Direction",
                                 elem_id="direction", visible=len(first.translators) > 1)
        info = gr.Markdown(first.info, elem_id="info")
        with gr.Tab("Image"):
            with gr.Row():
                source = upload(type="filepath", label="Input", elem_id="input",
                                sources=["upload", "clipboard", "webcam"])
                result = gr.Image(type="numpy", format="png", label="Output", elem_id="output",
                                  interactive=False)
            button = gr.Button("Translate", variant="primary", elem_id="translate")
            compare = gr.ImageSlider(label="Compare: input | output", type="numpy", format="png",
                                     elem_id="compare", interactive=False)
            examples = gr.Dataset(components=[source], samples=[[p] for p in first.examples[first_direction]],
                                  label="Examples (the run's validation images)", elem_id="examples",
                                  visible=bool(first.examples[first_direction]))
        with gr.Tab("Several images"):
            files = gr.File(file_count="multiple", file_types=["image"], label="Images", elem_id="inputs")
            many_button = gr.Button("Translate all", variant="primary", elem_id="translate_all")
            gallery = gr.Gallery(label="Outputs", elem_id="gallery", format="png")
            archive = gr.File(label="All outputs (zip)", elem_id="zip", interactive=False)
        with gr.Tab("Video"):
            with gr.Row():
                clip = gr.Video(label="Input video", sources=["upload"], elem_id="video_input")
                clip_out = gr.Video(label="Output video (H.264)", elem_id="video_output", interactive=False)
            video_button = gr.Button("Translate video", variant="primary", elem_id="translate_video")

        def on_model(label: str) -> tuple:
            item = served[label]
            d = next(iter(item.translators))
            return (gr.Radio(choices=list(item.translators), value=d, visible=len(item.translators) > 1),
                    item.info, *on_direction(label, d))

        def on_direction(label: str, d: str) -> tuple:
            samples = served[label].examples.get(d, [])
            return (gr.Dataset(samples=[[p] for p in samples], visible=bool(samples)),)

        model.change(on_model, [model], [direction, info, examples], queue=False, api_visibility="private")
        direction.change(on_direction, [model, direction], [examples], queue=False, api_visibility="private")
        examples.click(lambda sample: sample[0], [examples], [source], queue=False, api_visibility="private")
        button.click(app.load, [source], None, api_name="load", concurrency_limit=4).success(
            app.translate, [source, model, direction], [result, compare], api_name="translate", batch=True,
            max_batch_size=first.translators[first_direction].batch_size)
        many_button.click(app.translate_many, [files, model, direction], [gallery, archive], api_name="translate_many")
        video_button.click(app.translate_video, [clip, model, direction], [clip_out], api_name="translate_video")

    blocks.blocked_paths = sorted({str(p.resolve()) for p in runs}  # never served, whatever a request asks
                                  | {str(Path(t.cfg.data.root).resolve()) for s in served.values()
                                     for t in s.translators.values() if t.cfg.data.root})
    blocks.i2i_work = work
    weakref.finalize(blocks, shutil.rmtree, str(work), True)
    return blocks


def exposed(host: str) -> bool:
    """True when `host` is reachable from other machines (not a loopback address or localhost)."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name: it may resolve to any interface


def serve(runs: Sequence[str | Path], config: ServeConfig, echo: Callable[[str], None] = print) -> None:
    """Build the page for `runs` and serve it until Ctrl-C (which stops it cleanly)."""
    blocks = build(runs, config)
    if exposed(config.host):
        echo(f"Warning: serving on {config.host}: anyone who can reach this machine can use the page"
             + ("" if config.auth else " (add --auth USER:PASS)"))
    auth = tuple(config.auth.split(":", 1)) if config.auth else None
    try:
        blocks.queue(default_concurrency_limit=1).launch(
            server_name=config.host, server_port=config.port or None, share=False, auth=auth,
            prevent_thread_lock=True, quiet=True, show_error=False, theme=theme(), footer_links=["api"],
            blocked_paths=blocks.blocked_paths, ssr_mode=False, pwa=False, mcp_server=False,
            enable_monitoring=False, max_file_size=None, inbrowser=False)
        echo(f"Serving {', '.join(labels([Path(r) for r in runs]))} on {blocks.local_url} (Ctrl-C stops it)")
        threading.Event().wait()
    except KeyboardInterrupt:
        echo("stopped")
    finally:
        blocks.close()
        shutil.rmtree(blocks.i2i_work, ignore_errors=True)
